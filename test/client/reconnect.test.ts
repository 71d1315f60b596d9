// The client's reconnection rules against the real server: retry and its hints, 204, 429/503 with Retry-After,
// 5xx with backoff, the 4xx and content types that stop it, a server that is gone or replaced, online and offline.
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { connect, EventClientError, type ClientState } from '../../lib/client/index.js'
import { backoff } from '../../lib/client/client.js'
import { parseRetryAfter } from '../../lib/client/errors.js'
import type { EventStream } from '../../index.js'
import { build, listen, startDemo, until } from '../helpers.js'
import { blackholeProxy } from '../blackhole.js'
import { eventsOf, server, state } from './helpers.js'

t.test('after the server ends the stream, it reconnects with Last-Event-ID once the server\'s retry has passed', async t => {
  let endedAt = 0
  const { url, seen } = await server(t, async (n, reply) => {
    if (n === 2) return reply.code(204).send()
    const stream = reply.sse()
    await stream.message(`event ${n}`, { id: `id-${n}`, retry: 300 })
    endedAt = Date.now()
    await stream.close()
  })
  const client = connect(url, { retry: 5 })
  const got: string[] = []
  client.on('message', data => got.push(data))
  const error = await state(client, s => s === 'closed')
  t.equal(error, undefined, '204 stops for good, without an error')
  t.same(got, ['event 0', 'event 1'])
  t.equal(seen.length, 3, 'no request after the 204')
  t.equal(seen[0].headers['last-event-id'], undefined, 'no id on the first request')
  t.equal(seen[1].headers['last-event-id'], 'id-0')
  t.equal(seen[2].headers['last-event-id'], 'id-1')
  t.equal(seen[1].headers.accept, 'text/event-stream')
  t.ok(seen[2].at - endedAt >= 295, `waited the server's 300 ms (${seen[2].at - endedAt} ms)`)
})

t.test('a retry hint sent alone before the end (the server\'s reconnectWindow) is honoured', async t => {
  // The registry ends streams past maxStreamAge with a retry: frame drawn from the window, on its own.
  const { app, url, seen } = await server(t, async (_n, reply) => {
    const stream = reply.sse()
    await stream.message('hi', { id: 'a' })
  }, { maxStreamAge: 100, maxStreamAgeJitter: 0, reconnectWindow: [700, 700] })
  const client = connect(url, { retry: 5 })
  t.teardown(client.close)
  await until(() => seen.length === 2, 'the reconnect', 5000)
  const ended = app.openEventStreams
  t.ok(seen[1].at - seen[0].at >= 700 + 100 - 5, `came back after age + hint (${seen[1].at - seen[0].at} ms)`)
  t.equal(seen[1].headers['last-event-id'], 'a')
  t.ok(ended <= 1)
})

t.test('429 and 503 are retried after Retry-After; 500 with backoff; the errors say why', async t => {
  const { url, seen } = await server(t, async (n, reply) => {
    if (n === 0) return reply.code(429).header('retry-after', '1').send()
    if (n === 1) return reply.code(503).header('retry-after', new Date(Date.now() + 1500).toUTCString()).send()
    if (n <= 3) return reply.code(500).send()
    const stream = reply.sse()
    await stream.message('finally')
  })
  const client = connect(url, { retry: 20 })
  t.teardown(client.close)
  const errors: Array<[string | undefined, number | undefined, boolean | undefined, ClientState]> = []
  client.onState((state, error) => errors.push([error?.code, error?.status, error?.retryable, state]))
  const [data] = await once(eventsOf(client, 'message'), 'event')
  t.equal(data, 'finally')
  t.same(errors.slice(0, 4).map(e => e[1]), [429, 503, 500, 500])
  t.ok(errors.slice(0, 4).every(e => e[0] === 'FST_SSE_CLIENT_HTTP_STATUS' && e[2] === true && e[3] === 'connecting'))
  t.same(errors[4], [undefined, undefined, undefined, 'open'])
  t.ok(seen[1].at - seen[0].at >= 1000, `Retry-After: 1 waited ${seen[1].at - seen[0].at} ms`)
  // An HTTP date has a resolution of one second.
  t.ok(seen[2].at - seen[1].at >= 500, `Retry-After as a date waited ${seen[2].at - seen[1].at} ms`)
})

t.test('refused by admission control (maxStreams), it waits the Retry-After and is admitted once a slot frees', async t => {
  const opened: EventStream[] = []
  const { app, url, seen } = await server(t, async (_n, reply) => {
    const stream = reply.sse()
    if (stream.closed) return
    opened.push(stream)
    await stream.message(`welcome ${opened.length}`)
  }, { admission: { maxStreams: 1, retryWindow: [1000, 1000] } })
  const first = connect(url)
  t.teardown(first.close)
  await once(eventsOf(first, 'message'), 'event')
  const second = connect(url, { retry: 20 })
  t.teardown(second.close)
  const error = await state(second, (_state, error) => error !== undefined)
  t.equal(error?.status, 503)
  t.equal(error?.retryAfter, 1000, 'Retry-After: 1')
  first.close()
  await until(() => app.openEventStreams === 0, 'the first stream to end')
  const [data] = await once(eventsOf(second, 'message'), 'event')
  t.equal(data, 'welcome 2')
  t.equal(seen.length, 3, 'one refusal, then admitted')
  t.ok(seen[2].at - seen[1].at >= 1000, `waited the Retry-After: ${seen[2].at - seen[1].at} ms`)
})

t.test('401 and the other 4xx stop with a coded error, and are not retried; the iterator throws it', async t => {
  for (const status of [401, 403, 404, 400]) {
    const { url, seen } = await server(t, (_n, reply) => reply.code(status).send({ denied: true }))
    const client = connect(url, { retry: 1 })
    const iterating = (async () => { for await (const event of client) t.fail(`no event: ${event.type}`) })()
    const error = await state(client, s => s === 'closed')
    t.equal(error?.code, 'FST_SSE_CLIENT_HTTP_STATUS')
    t.equal(error?.status, status)
    t.equal(error?.retryable, false)
    t.equal(client.error, error)
    await t.rejects(iterating, error as EventClientError, 'the iterator throws the error that stopped the client')
    await t.rejects((async () => { for await (const event of client) t.fail(event.type) })(), error as EventClientError, 'as does a new one')
    await new Promise(resolve => setTimeout(resolve, 50))
    t.equal(seen.length, 1, `${status}: one request`)
  }
})

t.test('a success without text/event-stream stops: a login page, a proxy\'s answer', async t => {
  const { url, seen } = await server(t, (_n, reply) => reply.type('text/html').send('<p>log in</p>'))
  const client = connect(url, { retry: 1 })
  const error = await state(client, s => s === 'closed')
  t.equal(error?.code, 'FST_SSE_CLIENT_CONTENT_TYPE')
  t.match(error?.message, /text\/html/)
  t.equal(error?.status, 200)
  t.equal(seen.length, 1)
})

t.test('no server yet: network errors are retried with backoff until one listens on the URL', async t => {
  const probe = await build(t)
  const url = await listen(probe)
  await probe.close()
  const client = connect(url + '/events', { retry: 20, maxRetryDelay: 100 })
  t.teardown(client.close)
  const error = await state(client, (_s, e) => e !== undefined)
  t.equal(error?.code, 'FST_SSE_CLIENT_NETWORK')
  t.equal(error?.retryable, true)
  t.equal(client.state, 'connecting')
  const app = await build(t)
  app.get('/events', async (_request, reply) => { await reply.sse().message('up') })
  await app.listen({ port: Number(new URL(url).port), host: '127.0.0.1' })
  const [data] = await once(eventsOf(client, 'message'), 'event')
  t.equal(data, 'up')
})

t.test('a stream that breaks after it opened reconnects after retry, and says it broke', async t => {
  const { app, url, seen } = await server(t, async (n, reply) => {
    const stream = reply.sse()
    await stream.message(`m${n}`, { id: String(n) })
    // The socket is destroyed: no clean end of the chunked body.
    if (n === 0) setTimeout(() => reply.raw.destroy(), 20)
  })
  const client = connect(url, { retry: 10 })
  t.teardown(client.close)
  const error = await state(client, (s, e) => s === 'connecting' && e !== undefined)
  t.equal(error?.code, 'FST_SSE_CLIENT_NETWORK')
  await until(() => seen.length === 2 && client.lastEventId === '1', 'the reconnect')
  t.equal(seen[1].headers['last-event-id'], '0')
  t.ok(app.openEventStreams === 1)
})

t.test('a client of a process replaced on the same URL: reconnects, and the new history resyncs it', async t => {
  const { child, url } = await startDemo(t, 50)
  const client = connect<{ news: { n: number } }>(url + '/events', { maxRetryDelay: 500 })
  t.teardown(client.close)
  const news: number[] = []
  const resyncs: string[] = []
  client.on('news', data => news.push(data.n))
  client.on('resync', data => resyncs.push(String(data.lastEventId)))
  await until(() => news.length >= 3, 'news from the first process')
  const lastOfFirst = client.lastEventId
  child.kill('SIGTERM')
  await once(child, 'exit')
  const { child: replaced } = await startDemo(t, 50, { PORT: new URL(url).port })
  await until(() => resyncs.length === 1 && news.at(-1) !== undefined && news.at(-1)! >= 2 && news.length > 5, 'news from the new process', 20_000)
  t.same(resyncs, [lastOfFirst], 'the new process cannot place the old id: resync')
  t.ok(client.lastEventId !== lastOfFirst)
  replaced.kill()
})

t.test('online wakes a client waiting to retry; offline ends a connection its socket still thinks is open', async t => {
  // Node has no window: the page's global events, dispatched on a stand-in.
  const target = new EventTarget()
  const globals = globalThis as unknown as Record<string, unknown>
  Object.assign(globals, { addEventListener: target.addEventListener.bind(target), removeEventListener: target.removeEventListener.bind(target) })
  t.teardown(() => { delete globals.addEventListener; delete globals.removeEventListener })
  const { url, seen } = await server(t, async (n, reply) => {
    if (n === 1) return reply.code(503).send()
    await reply.sse().message(`m${n}`, { id: String(n) })
  })
  const client = connect(url, { retry: 60_000 })
  t.teardown(client.close)
  await until(() => client.lastEventId === '0', 'the first event')
  target.dispatchEvent(new Event('offline'))
  const error = await state(client, (s, e) => s === 'connecting' && e !== undefined)
  t.equal(error?.code, 'FST_SSE_CLIENT_NETWORK')
  target.dispatchEvent(new Event('online'))
  await until(() => seen.length === 2, 'the retry at once, not after 60 s')
  await new Promise(resolve => setTimeout(resolve, 20))
  target.dispatchEvent(new Event('online'))
  await state(client, s => s === 'open')
  t.equal(seen.length, 3)
  t.equal(seen[2].headers['last-event-id'], '0')
  client.close()
})

t.test('backoff is full jitter, capped; Retry-After reads seconds and dates', async t => {
  t.equal(backoff(1, 1000, 30_000, () => 0.5), 500)
  t.equal(backoff(3, 1000, 30_000, () => 0.999), 3996)
  t.equal(backoff(10, 1000, 30_000, () => 0.5), 15_000)
  t.equal(backoff(2, 1000, 30_000, () => 0), 0)
  t.ok(backoff(4, 100, 1000) < 800)
  t.equal(parseRetryAfter(null), undefined)
  t.equal(parseRetryAfter(' 7 '), 7000)
  t.equal(parseRetryAfter('soon'), undefined)
  t.equal(parseRetryAfter(new Date(Date.now() - 60_000).toUTCString()), 0)
  const later = parseRetryAfter(new Date(Date.now() + 10_000).toUTCString()) as number
  t.ok(later > 8000 && later <= 10_000)
})

t.test('online during an attempt that then opens does not cut short the wait after that stream ends', async t => {
  const target = new EventTarget()
  const globals = globalThis as unknown as Record<string, unknown>
  Object.assign(globals, { addEventListener: target.addEventListener.bind(target), removeEventListener: target.removeEventListener.bind(target) })
  t.teardown(() => { delete globals.addEventListener; delete globals.removeEventListener })
  let endedAt = 0
  let answer = (): void => {}
  const answered = new Promise<void>(resolve => { answer = resolve })
  const { url, seen } = await server(t, async (n, reply) => {
    if (n === 0) await answered
    const stream = reply.sse()
    await stream.message('x', { id: String(n), retry: 300 })
    if (n > 0) return
    endedAt = Date.now()
    await stream.close()
  })
  const client = connect(url)
  t.teardown(client.close)
  await until(() => seen.length === 1, 'the first request')
  target.dispatchEvent(new Event('online'))
  answer()
  await until(() => seen.length === 2, 'the reconnect')
  t.ok(seen[1].at - endedAt >= 295, `waited the server's retry (${seen[1].at - endedAt} ms)`)
})

t.test('a Retry-After longer than a timer can hold waits, rather than firing at once', async t => {
  const { url, seen } = await server(t, (_n, reply) => reply.code(503).header('retry-after', '3000000').send())
  const client = connect(url)
  t.teardown(client.close)
  const error = await state(client, (_s, e) => e !== undefined)
  t.equal(error?.retryAfter, 3_000_000_000)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(seen.length, 1, 'no second attempt')
})

t.test('a frame cut at any byte before its blank line is asked for again: its id is not the last id until the frame ends', async t => {
  // A plain server, as the issue's: "id: 1", "data: a", a blank line; then "id: 2", "data: b" cut off at `cut` bytes.
  const first = 'id: 1\ndata: a\n\n'
  const second = 'id: 2\ndata: b\n\n'
  for (let cut = 0; cut <= second.length; cut++) {
    const asked: Array<string | undefined> = []
    const plain = http.createServer((request, response) => {
      const last = request.headers['last-event-id'] as string | undefined
      asked.push(last)
      response.writeHead(200, { 'content-type': 'text/event-stream' })
      if (last === undefined) {
        response.write(first + second.slice(0, cut), () => { response.socket?.destroy() })
      } else {
        response.write(last === '1' ? second : '')
      }
    })
    plain.listen(0, '127.0.0.1')
    await once(plain, 'listening')
    const client = connect(`http://127.0.0.1:${(plain.address() as { port: number }).port}/`, { retry: 5 })
    const received: string[] = []
    client.on('message', data => received.push(data))
    await until(() => asked.length === 2 && received.length === 2, `the reconnect after ${cut} bytes of the second frame`)
    // Nothing more comes: what the client has is final.
    await new Promise(resolve => setTimeout(resolve, 20))
    t.same([asked, received], [[undefined, cut === second.length ? '2' : '1'], ['a', 'b']], `cut after ${cut} bytes: b once, asked again when incomplete`)
    client.close()
    plain.closeAllConnections()
    plain.close()
  }
})

t.test('idle timeout: heartbeats keep a stream open; a blackholed connection is given up after three heartbeats, and the client resumes with no gap', async t => {
  const { app, url, seen } = await server(t, async (_n, reply) => { await app.eventHub.subscribe(reply.sse(), 'idle') }, { heartbeat: 200 })
  const proxy = await blackholeProxy(t, Number(new URL(url).port))
  const client = connect(`${proxy.url}/events`, { retry: 10 })
  t.teardown(client.close)
  const received: string[] = []
  client.on('message', data => received.push(data))
  await until(() => app.eventHub.stats().subscribers.idle === 1 && client.state === 'open', 'the subscription')
  const first = await app.eventHub.publish('idle', 'e1')
  await until(() => received.length === 1, 'e1')
  // Silent but for heartbeats for longer than the idle timeout (600 ms): the stream stays.
  await new Promise(resolve => setTimeout(resolve, 1400))
  t.equal(seen.length, 1, 'heartbeats kept the connection')
  proxy.blackhole()
  const gone = Date.now()
  await app.eventHub.publish('idle', 'e2')
  const error = await state(client, (s, e) => s === 'connecting' && e !== undefined)
  t.equal(error?.code, 'FST_SSE_CLIENT_IDLE', 'given up for silence')
  // Three heartbeats of 200 ms after the last byte, which came at most two heartbeats before the blackhole.
  const after = Date.now() - gone
  t.ok(after >= 150 && after < 3000, `after ${after} ms`)
  await until(() => received.length === 2, 'e2 after the reconnect')
  t.equal(seen[1].headers['last-event-id'], first, 'resumed from the last event')
  t.same(received, ['e1', 'e2'], 'no gap, no duplicate')
})

t.test('idle timeout: the option wins over the header, false turns it off; a client holding events is not idle', async t => {
  // A server that sends two events and then nothing, not even heartbeats, on an open connection.
  const silent = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/event-stream', 'event-stream-heartbeat': '20' })
    const n = request.headers['last-event-id'] === undefined ? 0 : 2
    response.write(`id: ${n + 1}\ndata: ${n + 1}\n\nid: ${n + 2}\ndata: ${n + 2}\n\n`)
  })
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => { silent.closeAllConnections(); silent.close() })
  const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`

  const off = connect(url, { idleTimeout: false })
  t.teardown(off.close)
  const offStates: string[] = []
  off.onState(s => offStates.push(s))
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(offStates, ['open'], 'idleTimeout: false keeps a silent stream, whatever the server says')
  off.close()

  // An iterator that holds an event for longer than the timeout: the client is not reading, so it is not idle.
  const held = connect(url, { idleTimeout: 100, retry: 10 })
  t.teardown(held.close)
  const errors: Array<string | undefined> = []
  held.onState((s, e) => { if (s === 'connecting') errors.push(e?.code) })
  const iterator = held[Symbol.asyncIterator]()
  t.equal((await iterator.next()).value?.data, '1')
  await new Promise(resolve => setTimeout(resolve, 350))
  t.same(errors, [], 'no timeout while an event waits to be taken')
  t.equal((await iterator.next()).value?.data, '2')
  // Taken: the client reads again, and the silence counts from now.
  t.equal((await iterator.next()).value?.data, '3', 'reconnected after the timeout, resumed')
  t.same(errors, ['FST_SSE_CLIENT_IDLE'])
  held.close()

  for (const idleTimeout of [0, -1, 1.5, 2 ** 31, 'x', true]) {
    t.throws(() => connect(url, { idleTimeout: idleTimeout as number }), { code: 'FST_SSE_CLIENT_INVALID_OPTION' }, `idleTimeout ${String(idleTimeout)}`)
  }
})
