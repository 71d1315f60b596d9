import { once } from 'node:events'
import http2 from 'node:http2'
import t from 'tap'
import type { EventStream } from '../index.js'
import { build, captureLogs, fillSocket, get, openAfterClientLeft, listen, readAll, readUntil, trackIntervals, until } from './helpers.js'

t.test('headers reach the client at once, before any event', async t => {
  const app = await build(t)
  let stream: EventStream | undefined
  app.get('/', (_request, reply) => { stream = reply.sse() })
  const response = await get(`${await listen(app)}/`)
  t.equal(response.statusCode, 200, 'the response arrived while the handler had written no event')
  t.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8')
  await stream?.message('first')
  t.equal(await readUntil(response, '\n\n'), 'data: first\n\n')
  response.destroy()
})

t.test('client disconnect: closed, signal aborted, stream gone from the registry, timers cleared', async t => {
  const app = await build(t, { heartbeat: 20 })
  const opened = new Promise<EventStream>(resolve => {
    app.get('/', (_request, reply) => { resolve(reply.sse()) })
  })
  const intervals = trackIntervals(t)
  const response = await get(`${await listen(app)}/`)
  const stream = await opened
  t.equal(app.openEventStreams, 1)
  t.equal(intervals.live(), 1, 'the heartbeat timer runs while a stream is open')
  const aborted = once(stream.signal, 'abort')
  response.destroy()
  await aborted
  t.equal(stream.closed, true)
  t.equal(app.openEventStreams, 0)
  t.equal(intervals.live(), 0, 'the heartbeat timer stopped with the last stream')
  t.equal(await stream.message('after'), false)
  await stream.close()
})

t.test('a client that left before the handler opened its stream (the handler awaited first): ended at once, not kept', async t => {
  const app = await build(t, { heartbeat: 20 })
  const intervals = trackIntervals(t)
  const stream = await openAfterClientLeft(app, '/')
  t.equal(stream.closed, true)
  t.equal(stream.signal.aborted, true)
  t.equal(app.openEventStreams, 0, 'not left in the registry')
  t.equal(intervals.live(), 0, 'no heartbeat timer for it')
  t.equal(await stream.message('nobody'), false)
  await stream.close()
})

t.test('fastify.close() ends hundreds of open streams and resolves promptly', async t => {
  const app = await build(t)
  const count = 300
  const streams: EventStream[] = []
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    stream.message('hello')
  })
  const url = `${await listen(app)}/`
  const responses = await Promise.all(Array.from({ length: count }, () => get(url)))
  t.equal(app.openEventStreams, count)
  const bodies = Promise.all(responses.map(readAll))
  await app.close()
  t.ok(streams.every(stream => stream.closed && stream.signal.aborted), 'every stream ended and aborted')
  t.equal(app.openEventStreams, 0)
  const received = await bodies
  const hints = received.map(body => Number(/^data: hello\n\nretry: (\d+)\n\n$/.exec(body)?.[1]))
  t.ok(hints.every(hint => hint >= 1000 && hint <= 10_000), 'every client got its data, a reconnect hint in the default window, and a clean end')
  t.ok(responses.every(response => response.complete), 'every response ended with the terminating chunk')
})

t.test('fastify.close() does not wait for a client that stopped reading', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * 1024 })
  const full = new Promise<void>(resolve => {
    app.get('/', async (_request, reply) => {
      await fillSocket(reply.sse())
      resolve()
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  await full
  await app.close()
  t.equal(app.openEventStreams, 0)
  response.destroy()
})

t.test('a handler that throws after reply.sse() has its stream ended and the error logged', async t => {
  const { logger, lines } = captureLogs()
  const app = await build(t, {}, { logger })
  app.get('/sync', (_request, reply) => {
    reply.sse().message('before')
    throw new Error('sync failure')
  })
  app.get('/async', async (_request, reply) => {
    const stream = reply.sse()
    await stream.message('before')
    throw new Error('async failure')
  })
  const url = await listen(app)
  for (const path of ['sync', 'async']) {
    const response = await get(`${url}/${path}`)
    t.equal(await readAll(response), 'data: before\n\n', `${path}: the stream ended`)
    t.equal(response.complete, true)
    await until(() => lines.some(line => line.err?.message === `${path} failure`), `${path} log line`)
    const line = lines.find(line => line.err?.message === `${path} failure`)
    t.equal(line?.level, 50)
    t.match(line, { msg: /event stream handler failed/, reqId: /\S/ })
  }
  t.equal(app.openEventStreams, 0)
})

t.test('a handler that throws before reply.sse() gets Fastify\'s usual error reply', async t => {
  const app = await build(t)
  app.get('/sync', () => { throw new Error('plain sync') })
  app.get('/async', async () => { throw new Error('plain async') })
  app.get('/value', async () => ({ ok: true }))
  app.get('/plain', (_request, reply) => { reply.send('plain') })
  t.match((await app.inject('/sync')).json(), { statusCode: 500, message: 'plain sync' })
  t.match((await app.inject('/async')).json(), { statusCode: 500, message: 'plain async' })
  t.same((await app.inject('/value')).json(), { ok: true })
  t.equal((await app.inject('/plain')).body, 'plain')
})

t.test('heartbeat: one timer for all streams, a comment only to streams idle for the interval', async t => {
  const setIntervalOriginal = globalThis.setInterval
  const intervals = trackIntervals(t)
  const heartbeat = 100
  const app = await build(t, { heartbeat })
  const streams: EventStream[] = []
  app.get('/', (_request, reply) => { streams.push(reply.sse()) })
  const url = `${await listen(app)}/`
  const idle = await Promise.all(Array.from({ length: 5 }, () => get(url)))
  const busy = await get(url)
  t.same(intervals.delays, [heartbeat], 'one interval timer for six streams')
  const busyStream = streams[5]
  let busyBody = ''
  busy.on('data', chunk => { busyBody += chunk })
  // Keep one stream busy for five intervals; every idle stream gets its heartbeat meanwhile.
  const writer = setIntervalOriginal(() => busyStream.message('work'), heartbeat / 3)
  const beats = await Promise.all(idle.map(response => readUntil(response, ': \n\n')))
  t.ok(beats.every(body => body === ': \n\n'), 'idle streams got an empty comment')
  await new Promise(resolve => setTimeout(resolve, heartbeat * 5))
  clearInterval(writer)
  t.ok(busyBody.length > 0, 'the busy stream received its events')
  t.notOk(busyBody.includes(': \n\n'), 'and no heartbeat while it was busy')
  for (const response of [...idle, busy]) response.destroy()
  await until(() => app.openEventStreams === 0, 'streams to end')
  await get(url).then(response => response.destroy())
  t.equal(intervals.live(), 1)
  t.same(intervals.delays, [heartbeat, heartbeat], 'the timer stopped with the last stream and restarted with the next')
})

t.test('heartbeat: false writes no keep-alive and starts no timer', async t => {
  const app = await build(t, { heartbeat: false })
  app.get('/', (_request, reply) => { reply.sse() })
  const intervals = trackIntervals(t)
  const response = await get(`${await listen(app)}/`)
  t.equal(app.openEventStreams, 1)
  t.same(intervals.delays, [])
  response.destroy()
})

t.test('HTTP/2: events flow, no Connection header, no process warning', async t => {
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const app = await build(t, {}, { http2: true })
  app.addHook('onRequest', async (_request, reply) => { reply.header('connection', 'keep-alive').header('x-hook', 'yes') })
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    await stream.message('over h2', { id: '1' })
    await stream.close()
  })
  const url = await listen(app)
  const session = http2.connect(url)
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/', 'last-event-id': '0' })
  const [headers] = await once(request, 'response') as [http2.IncomingHttpHeaders]
  t.equal(headers[':status'], 200)
  t.equal(headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(headers.connection, undefined)
  t.equal(headers['x-hook'], 'yes')
  t.equal(await readAll(request), 'id: 1\ndata: over h2\n\n')
  t.same(warnings, [])
})

t.test('HTTP/2: fastify.close() ends open streams', async t => {
  const app = await build(t, {}, { http2: true })
  app.get('/', (_request, reply) => { reply.sse().message('open') })
  const session = http2.connect(await listen(app))
  const request = session.request({ ':path': '/' })
  t.equal(await readUntil(request, '\n\n'), 'data: open\n\n')
  const body = readAll(request)
  await app.close()
  t.match(await body, /^retry: \d+\n\n$/, 'the reconnect hint, then the end')
  session.close()
})
