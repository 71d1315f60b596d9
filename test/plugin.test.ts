import Fastify from 'fastify'
import t from 'tap'
import fastifyEventStream, {
  CACHE_CONTROL_VALUE, CONTENT_TYPE_VALUE, FST_SSE_INVALID_OPTION, FST_SSE_INVALID_STATUS, FST_SSE_REPLY_SENT,
  type FastifyEventStreamOptions
} from '../index.js'
import { build, get, listen, readAll } from './helpers.js'

t.test('the seed example has the exact body', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse(200)
    stream.message('first', { id: '1', event: 'greet' })
    stream.comment('keep-alive')
    stream.message('multi\nline')
    await stream.close()
  })
  const response = await app.inject({ url: '/', payloadAsStream: true })
  t.equal(response.statusCode, 200)
  t.equal(await readAll(response.stream()), 'id: 1\nevent: greet\ndata: first\n\n: keep-alive\n\ndata: multi\ndata: line\n\n')
})

t.test('headers: stream headers merged over those set by hooks and the handler', async t => {
  const app = await build(t)
  app.addHook('onRequest', async (_request, reply) => { reply.header('access-control-allow-origin', '*') })
  app.get('/', (_request, reply) => {
    reply.header('x-custom', 'kept').header('content-type', 'application/json').header('content-length', '10')
    reply.raw.setHeader('x-raw', 'kept too')
    reply.raw.setHeader('content-encoding', 'gzip')
    reply.sse().close()
  })
  const response = await get(`${await listen(app)}/`)
  t.equal(response.headers['content-type'], CONTENT_TYPE_VALUE)
  t.equal(response.headers['cache-control'], CACHE_CONTROL_VALUE)
  t.equal(response.headers.connection, 'keep-alive')
  t.equal(response.headers['x-accel-buffering'], 'no')
  t.equal(response.headers['access-control-allow-origin'], '*')
  t.equal(response.headers['x-custom'], 'kept')
  t.equal(response.headers['x-raw'], 'kept too')
  t.equal(response.headers['content-length'], undefined, 'no length: the body is a stream')
  t.equal(response.headers['content-encoding'], undefined, 'the body is not encoded')
  t.equal(response.headers['transfer-encoding'], 'chunked')
  t.equal(response.headers['event-stream-heartbeat'], '15000', 'the heartbeat interval, for the client\'s idle timeout')
  t.equal(response.headers['access-control-expose-headers'], 'event-stream-heartbeat', 'exposed to a cross-origin page')
  t.equal(await readAll(response), '')
})

t.test('headers: the heartbeat interval is said unless heartbeats are off; it joins the headers CORS already exposes', async t => {
  const off = await build(t, { heartbeat: false })
  off.get('/', (_request, reply) => { reply.sse().close() })
  const silent = await get(`${await listen(off)}/`)
  t.equal(silent.headers['event-stream-heartbeat'], undefined)
  silent.resume()
  const app = await build(t, { heartbeat: 250 })
  app.addHook('onRequest', async (_request, reply) => { reply.header('access-control-allow-origin', '*').header('access-control-expose-headers', 'x-total, Event-Stream-Heartbeat') })
  app.get('/', (_request, reply) => { reply.sse().close() })
  app.get('/other', (_request, reply) => { reply.header('access-control-expose-headers', 'x-total').sse().close() })
  const url = await listen(app)
  const listed = await get(`${url}/`)
  t.equal(listed.headers['event-stream-heartbeat'], '250')
  t.equal(listed.headers['access-control-expose-headers'], 'x-total, Event-Stream-Heartbeat', 'named once')
  listed.resume()
  const added = await get(`${url}/other`)
  t.equal(added.headers['access-control-expose-headers'], 'x-total, event-stream-heartbeat')
  added.resume()
})

t.test('status: the argument, else the status set on the reply, else 200', async t => {
  const app = await build(t)
  app.get('/arg', (_request, reply) => { reply.code(404).sse(201).close() })
  app.get('/reply', (_request, reply) => { reply.code(202).sse().close() })
  app.get('/default', (_request, reply) => { reply.sse().close() })
  t.equal((await app.inject('/arg')).statusCode, 201)
  t.equal((await app.inject('/reply')).statusCode, 202)
  t.equal((await app.inject('/default')).statusCode, 200)
})

t.test('an invalid status throws FST_SSE_INVALID_STATUS and the reply stays usable', async t => {
  const app = await build(t)
  const statuses = [199, 600, 200.5, NaN]
  for (const status of statuses) {
    app.get(`/${String(status)}`, (_request, reply) => {
      const err = t.throws(() => reply.sse(status), FST_SSE_INVALID_STATUS)
      t.match(err, { code: 'FST_SSE_INVALID_STATUS' })
      t.equal(reply.sent, false)
      reply.code(400).send({ status })
    })
  }
  app.get('/thrown', (_request, reply) => { reply.sse(99) })
  for (const status of statuses) {
    const response = await app.inject(`/${String(status)}`)
    t.equal(response.statusCode, 400, `status ${status}`)
  }
  const response = await app.inject('/thrown')
  t.equal(response.statusCode, 500)
  t.equal(response.json().code, 'FST_SSE_INVALID_STATUS')
})

t.test('reply.sse() on a reply already sent or hijacked throws FST_SSE_REPLY_SENT', async t => {
  const app = await build(t)
  app.get('/twice', (_request, reply) => {
    const stream = reply.sse()
    t.throws(() => reply.sse(), FST_SSE_REPLY_SENT)
    stream.message('still open')
    stream.close()
  })
  app.get('/sent', async (_request, reply) => {
    await reply.send('done')
    t.throws(() => reply.sse(), { code: 'FST_SSE_REPLY_SENT' })
  })
  app.get('/hijacked', (_request, reply) => {
    reply.hijack()
    t.throws(() => reply.sse(), { code: 'FST_SSE_REPLY_SENT' })
    reply.raw.end('raw')
  })
  t.equal((await app.inject('/twice')).body, 'data: still open\n\n')
  t.equal((await app.inject('/sent')).body, 'done')
  t.equal((await app.inject('/hijacked')).body, 'raw')
})

t.test('lastEventId: the Last-Event-ID header, undefined when absent or empty', async t => {
  const app = await build(t)
  const seen: unknown[] = []
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    seen.push(stream.lastEventId)
    stream.close()
  })
  await app.inject({ url: '/', headers: { 'last-event-id': '41' } })
  await app.inject({ url: '/', headers: { 'last-event-id': '' } })
  await app.inject({ url: '/' })
  t.same(seen, ['41', undefined, undefined])
})

t.test('lastEventId follows the route header schema, coercion included', async t => {
  const app = await build(t)
  let seen: unknown
  app.get('/', {
    schema: { headers: { type: 'object', properties: { 'last-event-id': { type: 'integer' } } } }
  }, (_request, reply) => {
    const stream = reply.sse()
    seen = stream.lastEventId
    stream.close()
  })
  await app.inject({ url: '/', headers: { 'last-event-id': '7' } })
  t.equal(seen, 7)
  t.equal((await app.inject({ url: '/', headers: { 'last-event-id': 'x' } })).statusCode, 400)
})

t.test('the retry option is written when a stream opens', async t => {
  const app = await build(t, { retry: 2500.5 })
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    stream.message('x')
    stream.close()
  })
  t.equal((await app.inject('/')).body, 'retry: 2500\n\ndata: x\n\n')
})

t.test('an invalid field throws synchronously, writes nothing, and the stream stays usable', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    t.throws(() => stream.message('lost?', { id: 'a\nb' }), { code: 'FST_SSE_INVALID_FIELD' })
    t.throws(() => stream.message('lost?', { event: 'a\rb' }), { code: 'FST_SSE_INVALID_FIELD' })
    t.throws(() => stream.comment('a\nb'), { code: 'FST_SSE_INVALID_FIELD' })
    t.equal(stream.closed, false)
    t.equal(await stream.message('after'), true)
    await stream.close()
  })
  t.equal((await app.inject('/')).body, 'data: after\n\n')
})

t.test('typed JSON events: send(event, payload) writes the JSON under the event name', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse<{ tick: { n: number }, note: string }>()
    await stream.send('tick', { n: 1 }, { id: 1 })
    await stream.send('note', 'two\nlines', { retry: 10 })
    t.throws(() => stream.send('note', undefined as unknown as string), { code: 'FST_SSE_INVALID_FIELD', message: /JSON payload/ })
    await stream.close()
  })
  t.equal((await app.inject('/')).body,
    'id: 1\nevent: tick\ndata: {"n":1}\n\nevent: note\nretry: 10\ndata: "two\\nlines"\n\n')
})

t.test('writes after close() resolve false and close() is idempotent', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    const first = stream.close()
    t.equal(stream.closed, true)
    t.equal(stream.signal.aborted, true)
    t.equal(stream.close(), first, 'the same promise')
    t.equal(await stream.message('late'), false)
    t.equal(await stream.comment('late'), false)
    await first
    await stream.close()
  })
  t.equal((await app.inject('/')).body, '')
})

t.test('options are validated at registration with FST_SSE_INVALID_OPTION', async t => {
  const bad: Array<[string, unknown]> = [
    ['heartbeat', 0], ['heartbeat', -1], ['heartbeat', 1.5], ['heartbeat', '100'], ['heartbeat', true],
    ['heartbeat', 2 ** 31], ['maxBufferedBytes', 0], ['maxBufferedBytes', Infinity], ['maxBufferedBytes', '1'],
    ['retry', -1], ['retry', NaN], ['retry', '10']
  ]
  for (const [name, value] of bad) {
    const app = Fastify()
    app.register(fastifyEventStream, { [name]: value } as FastifyEventStreamOptions)
    const err = await t.rejects(async () => { await app.ready() }, FST_SSE_INVALID_OPTION, `${name}: ${String(value)}`)
    t.match(err, { code: 'FST_SSE_INVALID_OPTION', message: new RegExp(name) })
    await app.close()
  }
  for (const options of [{ heartbeat: false as const }, { heartbeat: 1 }, { maxBufferedBytes: 1, retry: 0 }, {}]) {
    const app = Fastify()
    app.register(fastifyEventStream, options)
    await t.resolves(async () => { await app.ready() }, JSON.stringify(options))
    await app.close()
  }
})

t.test('openEventStreams counts the streams open on the instance', async t => {
  const app = await build(t)
  const streams: Array<{ close: () => Promise<void> }> = []
  app.get('/', (_request, reply) => { streams.push(reply.sse()) })
  const url = `${await listen(app)}/`
  t.equal(app.openEventStreams, 0)
  const responses = [await get(url), await get(url)]
  t.equal(app.openEventStreams, 2)
  await streams[0].close()
  t.equal(app.openEventStreams, 1)
  await streams[1].close()
  t.equal(app.openEventStreams, 0)
  for (const response of responses) await readAll(response)
})
