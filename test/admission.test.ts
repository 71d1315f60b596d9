import t, { type Test } from 'tap'
import { once } from 'node:events'
import http from 'node:http'
import underPressure from '@fastify/under-pressure'
import { build, get, listen, openAfterClientLeft, readAll, readUntil } from './helpers.js'
import type { EventStream, FastifyEventStreamOptions, Refusal } from '../index.js'

/** An app whose /events route opens a stream and keeps it (the streams it opened are in `streams`). */
async function streamsApp (t: Test, options: FastifyEventStreamOptions, refusal?: Refusal, healthCheck?: () => Promise<boolean>): Promise<{ url: string, streams: Array<EventStream<any, any>>, app: Awaited<ReturnType<typeof build>> }> {
  const app = await build(t, options)
  // The route lets under-pressure's own hook pass its requests: reply.sse() refuses them, the way this app says.
  if (healthCheck !== undefined) await app.register(underPressure, { healthCheck, healthCheckInterval: 10 })
  const streams: Array<EventStream<any, any>> = []
  app.get('/events', { config: { pressureHandler: () => undefined } }, (_request, reply) => {
    const stream = reply.sse(200, refusal === undefined ? {} : { refusal })
    if (stream.closed) return
    streams.push(stream)
    stream.comment('open')
  })
  return { url: await listen(app), streams, app }
}

/** Opens a stream and waits for its first comment. */
async function open (url: string, headers: http.OutgoingHttpHeaders = {}): Promise<http.IncomingMessage> {
  const response = await get(url, headers)
  if (response.statusCode === 200) await readUntil(response, ': open')
  return response
}

t.test('maxStreams: past the cap a stream gets 503 with Retry-After from the window; a freed slot takes the next', async t => {
  const { url, streams, app } = await streamsApp(t, { admission: { maxStreams: 2, retryWindow: [2000, 3000] } })
  const held = [await open(`${url}/events`), await open(`${url}/events`)]
  const refused = await get(`${url}/events`)
  t.equal(refused.statusCode, 503)
  t.ok(['2', '3'].includes(refused.headers['retry-after'] as string), `Retry-After ${refused.headers['retry-after']} s, from the window`)
  t.equal(refused.headers['content-type'], 'application/json; charset=utf-8')
  t.same(JSON.parse(await readAll(refused)), {
    statusCode: 503,
    code: 'FST_SSE_REFUSED',
    error: 'Service Unavailable',
    message: 'The event stream was refused: this instance holds its maximum of open streams; retry later'
  }, 'the body Fastify gives a FST_SSE_REFUSED error')
  t.equal(app.openEventStreams, 2, 'the refused stream never counted')
  t.same(app.eventStreamAdmission.stats(), { refused: { streams: 1, key: 0, pressure: 0 }, keys: 0 })

  const closed = once(held[0], 'end')
  held[0].resume()
  await streams[0].close()
  await closed
  const next = await open(`${url}/events`)
  t.equal(next.statusCode, 200, 'the freed slot takes the next stream')
  t.equal(app.openEventStreams, 2)
  held[1].destroy()
  next.destroy()
})

t.test("refusal 'retry': 200, an event stream holding only a retry hint from the window, ended at once", async t => {
  const { url, app } = await streamsApp(t, { admission: { maxStreams: 0, refusal: 'retry', retryWindow: [250, 300] } })
  const refused = await get(`${url}/events`)
  t.equal(refused.statusCode, 200)
  t.match(refused.headers['content-type'], /^text\/event-stream/)
  const body = await readAll(refused)
  const match = /^retry: (\d+)\n\n$/.exec(body)
  t.ok(match !== null, `body ${JSON.stringify(body)}`)
  const delay = Number(match?.[1])
  t.ok(delay >= 250 && delay <= 300, `retry ${delay} ms, from the window`)
  t.equal(app.openEventStreams, 0)
})

t.test("a route's refusal option overrides the plugin's; an invalid one throws FST_SSE_INVALID_OPTION", async t => {
  const { url } = await streamsApp(t, { admission: { maxStreams: 0, retryWindow: [100, 100] } }, 'retry')
  const refused = await get(`${url}/events`)
  t.equal(refused.statusCode, 200)
  t.equal(await readAll(refused), 'retry: 100\n\n')

  const app = await build(t)
  app.get('/bad', (_request, reply) => { reply.sse(200, { refusal: 'maybe' as Refusal }) })
  const response = await app.inject('/bad')
  t.equal(response.statusCode, 500)
  t.equal(response.json().code, 'FST_SSE_INVALID_OPTION')
})

t.test('maxStreamsPerKey: each key holds its cap, other keys are not touched, an ended stream frees its key', async t => {
  const { url, streams, app } = await streamsApp(t, {
    admission: { maxStreamsPerKey: 2, key: request => request.headers['x-user'] as string | undefined }
  })
  const a = [await open(`${url}/events`, { 'x-user': 'a' }), await open(`${url}/events`, { 'x-user': 'a' })]
  const third = await get(`${url}/events`, { 'x-user': 'a' })
  t.equal(third.statusCode, 503)
  t.match(JSON.parse(await readAll(third)).message, /this client holds its maximum/)
  const b = await open(`${url}/events`, { 'x-user': 'b' })
  t.equal(b.statusCode, 200, 'another key is admitted')
  const anonymous = [await open(`${url}/events`), await open(`${url}/events`), await open(`${url}/events`)]
  t.ok(anonymous.every(response => response.statusCode === 200), 'a request without a key counts under none')
  t.same(app.eventStreamAdmission.stats(), { refused: { streams: 0, key: 1, pressure: 0 }, keys: 2 })

  const gone = once(streams[0].signal, 'abort')
  a[0].destroy()
  await gone
  const again = await open(`${url}/events`, { 'x-user': 'a' })
  t.equal(again.statusCode, 200, 'the key got its slot back')
  for (const response of [a[1], b, again, ...anonymous]) response.destroy()
  await t.resolveMatch(waitFor(() => app.eventStreamAdmission.stats().keys === 0), true, 'every key is forgotten once its streams end')
})

t.test('the default key is the client IP', async t => {
  const { url } = await streamsApp(t, { admission: { maxStreamsPerKey: 1 } })
  const first = await open(`${url}/events`)
  const second = await get(`${url}/events`)
  t.equal(second.statusCode, 503)
  second.resume()
  first.destroy()
})

t.test('a stream whose client left before it opened holds no slot of its key', async t => {
  const app = await build(t, { admission: { maxStreamsPerKey: 1, key: () => 'k' } })
  const stream = await openAfterClientLeft(app, '/late')
  t.equal(stream.closed, true, 'the stream ended as it opened')
  t.equal(app.eventStreamAdmission.stats().keys, 0)
})

t.test('caps can be changed while the server runs; a bad value throws FST_SSE_INVALID_OPTION and changes nothing', async t => {
  const { url, app } = await streamsApp(t, { admission: { maxStreams: 1 } })
  const first = await open(`${url}/events`)
  const refused = await get(`${url}/events`)
  t.equal(refused.statusCode, 503)
  refused.resume()
  app.eventStreamAdmission.maxStreams = 2
  t.equal(app.eventStreamAdmission.maxStreams, 2)
  const second = await open(`${url}/events`)
  t.equal(second.statusCode, 200, 'the raised cap admits the next one')
  app.eventStreamAdmission.maxStreams = false
  const third = await open(`${url}/events`)
  t.equal(third.statusCode, 200, 'no cap')
  t.throws(() => { app.eventStreamAdmission.maxStreams = -1 }, { code: 'FST_SSE_INVALID_OPTION' })
  t.throws(() => { app.eventStreamAdmission.maxStreamsPerKey = 1.5 }, { code: 'FST_SSE_INVALID_OPTION' })
  t.equal(app.eventStreamAdmission.maxStreams, false)
  app.eventStreamAdmission.maxStreamsPerKey = 5
  t.equal(app.eventStreamAdmission.maxStreamsPerKey, 5)
  for (const response of [first, second, third]) response.destroy()
})

t.test('under pressure (@fastify/under-pressure) new streams are refused the same way and open streams stay', async t => {
  let healthy = true
  const { url, streams, app } = await streamsApp(t, { admission: { refusal: 'retry', retryWindow: [100, 100] } }, undefined, async () => healthy)
  const held = await open(`${url}/events`)
  healthy = false
  await waitFor(() => app.isUnderPressure())
  const refused = await get(`${url}/events`)
  t.equal(refused.statusCode, 200)
  t.equal(await readAll(refused), 'retry: 100\n\n')
  t.equal(app.eventStreamAdmission.stats().refused.pressure, 1)
  await streams[0].message('still here')
  t.match(await readUntil(held, 'still here'), 'data: still here', 'the open stream stays')
  healthy = true
  await waitFor(() => !app.isUnderPressure())
  const admitted = await open(`${url}/events`)
  t.equal(admitted.statusCode, 200, 'admitted again once the pressure is gone')
  held.destroy()
  admitted.destroy()
})

t.test('underPressure: false ignores the pressure', async t => {
  const { url, app } = await streamsApp(t, { admission: { underPressure: false } }, undefined, async () => false)
  await waitFor(() => app.isUnderPressure())
  const response = await open(`${url}/events`)
  t.equal(response.statusCode, 200)
  response.destroy()
})

t.test('admission options are validated at registration with FST_SSE_INVALID_OPTION', async t => {
  const bad: Array<FastifyEventStreamOptions['admission']> = [
    { maxStreams: -1 }, { maxStreams: 1.5 }, { maxStreamsPerKey: '3' as unknown as number }, { key: 'ip' as never },
    { refusal: '503' as Refusal }, { retryWindow: [5, 1] }, { retryWindow: [1] as never }, { underPressure: 'yes' as never }
  ]
  for (const admission of bad) {
    await t.rejects(build(t, { admission }), { code: 'FST_SSE_INVALID_OPTION' }, JSON.stringify(admission))
  }
  const app = await build(t, { reconnectWindow: false, admission: { maxStreams: 0 } })
  app.get('/events', (_request, reply) => { reply.sse() })
  const response = await app.inject('/events')
  t.equal(response.statusCode, 503)
  t.ok(Number(response.headers['retry-after']) >= 1 && Number(response.headers['retry-after']) <= 10, 'without a reconnect window, refused clients wait 1-10 s')
})

async function waitFor (condition: () => boolean): Promise<boolean> {
  while (!condition()) await new Promise(resolve => setTimeout(resolve, 5))
  return true
}

t.test('a full instance answers a mistaken call with its error, not with a refusal', async t => {
  const app = await build(t, { admission: { maxStreams: 0 } })
  app.get('/status', (_request, reply) => { reply.sse(99) })
  app.get('/option', (_request, reply) => { reply.sse(200, { compression: { encodings: ['zip'] } } as never) })
  const status = await app.inject('/status')
  t.equal(status.statusCode, 500)
  t.equal(status.json().code, 'FST_SSE_INVALID_STATUS')
  const option = await app.inject('/option')
  t.equal(option.statusCode, 500)
  t.equal(option.json().code, 'FST_SSE_INVALID_OPTION')
  t.same(app.eventStreamAdmission.stats().refused, { streams: 0, key: 0, pressure: 0 }, 'nothing refused')
})
