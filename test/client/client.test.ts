// The client (fastify-event-stream/client) in Node, against the real server over real sockets: events, requests,
// the hub's resume and resync, storage, the iterator's backpressure, bad options.
import { once } from 'node:events'
import t from 'tap'
import { connect, EventClientError } from '../../lib/client/index.js'
import { build, listen, until } from '../helpers.js'
import { eventsOf, server, state, type Events } from './helpers.js'

t.test('JSON events arrive parsed and typed, message and raw types as text, a bad JSON event is skipped', async t => {
  const { url } = await server(t, async (_n, reply) => {
    const stream = reply.sse<Events>()
    await stream.send('chat', { text: 'hello' }, { id: 1 })
    await stream.message('plain text\nof two lines', { id: 2 })
    await stream.message('{"broken', { event: 'chat', id: 3 })
    await stream.message('not json', { event: 'note', id: 4 })
    await stream.send('chat', { text: 'after' }, { id: 5 })
  })
  const client = connect<Events>(url, { raw: ['note'] })
  t.teardown(client.close)
  const got: unknown[] = []
  const errors: Array<string | undefined> = []
  client.onState((_state, error) => errors.push(error?.code))
  client.on('chat', (data, event) => got.push(['chat', data.text, event.id, event.lastEventId]))
  const removed = client.on('chat', () => t.fail('a removed listener is not called'))
  removed()
  client.on('message', data => got.push(['message', data]))
  client.on('note', data => got.push(['note', data]))
  await until(() => got.length === 4, 'four events')
  t.same(got, [['chat', 'hello', '1', '1'], ['message', 'plain text\nof two lines'], ['note', 'not json'], ['chat', 'after', '5', '5']])
  t.ok(errors.includes('FST_SSE_CLIENT_INVALID_JSON'), 'the broken event is reported')
  t.equal(client.lastEventId, '5')
  t.equal(client.state, 'open')
})

t.test('the headers function runs before every connection: a refreshed token goes out on each', async t => {
  const { url, seen } = await server(t, async (n, reply) => {
    if (n === 1) return reply.code(500).send()
    const stream = reply.sse()
    await stream.message(`n${n}`, { id: String(n) })
    if (n === 0) await stream.close()
  })
  let token = 0
  const client = connect(url, {
    retry: 10,
    headers: async () => {
      await new Promise(resolve => setTimeout(resolve, 5))
      return { authorization: `Bearer ${++token}`, 'x-last': 'kept' }
    }
  })
  t.teardown(client.close)
  await until(() => seen.length === 3 && client.lastEventId === '2', 'the third connection')
  t.same(seen.map(s => s.headers.authorization), ['Bearer 1', 'Bearer 2', 'Bearer 3'])
  t.same(seen.map(s => s.headers['last-event-id']), [undefined, '0', '0'])
  t.equal(seen[2].headers['x-last'], 'kept')
})

t.test('a headers function that throws is a failed attempt, retried', async t => {
  const { url, seen } = await server(t, async (_n, reply) => { await reply.sse().message('ok') })
  let calls = 0
  const client = connect(url, {
    retry: 5,
    headers: () => {
      if (++calls === 1) throw new Error('token service down')
      return {}
    }
  })
  t.teardown(client.close)
  const error = await state(client, (_s, e) => e !== undefined)
  t.equal(error?.code, 'FST_SSE_CLIENT_NETWORK')
  t.match((error?.cause as Error).message, 'token service down')
  await state(client, s => s === 'open')
  t.equal(seen.length, 1)
})

t.test('POST with a body, credentials and the id in the query string (lastEventIdQuery) on every connection', async t => {
  const { url, seen } = await server(t, async (n, reply) => {
    const stream = reply.sse()
    await stream.message('x', { id: `p${n}` })
    if (n === 0) await stream.close()
  }, { lastEventIdQuery: 'since' })
  const received: string[] = []
  const client = connect(url, {
    method: 'POST',
    body: JSON.stringify({ prompt: 'hi' }),
    headers: { 'content-type': 'application/json' },
    credentials: 'include',
    lastEventIdQuery: 'since',
    lastEventId: 'start',
    retry: 5
  })
  t.teardown(client.close)
  client.on('message', (_data, event) => received.push(event.lastEventId))
  await until(() => received.length === 2, 'two connections')
  t.same(seen.map(s => s.body), [{ prompt: 'hi' }, { prompt: 'hi' }])
  t.same(seen.map(s => s.headers['last-event-id']), [undefined, undefined], 'not as a header')
  t.same(received, ['p0', 'p1'])
})

t.test('the id in the query string reaches the server\'s lastEventIdQuery', async t => {
  const app = await build(t, { lastEventIdQuery: 'since' })
  const ids: Array<string | undefined> = []
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    ids.push(stream.lastEventId)
    if (ids.length === 1) stream.close()
  })
  const client = connect(await listen(app) + '/events?topic=a', { lastEventIdQuery: 'since', lastEventId: 'from-a-reload', retry: 5 })
  t.teardown(client.close)
  await until(() => ids.length === 2, 'a reconnect')
  t.same(ids, ['from-a-reload', 'from-a-reload'])
})

t.test('an AbortSignal, or close(), ends the stream: the server sees it end', async t => {
  const { app, url } = await server(t, async (_n, reply) => { await reply.sse().message('open') })
  const controller = new AbortController()
  const client = connect(url, { signal: controller.signal })
  const other = connect(url)
  await Promise.all([state(client, s => s === 'open'), state(other, s => s === 'open')])
  await until(() => app.openEventStreams === 2, 'two streams')
  const iterating = (async () => {
    const events = []
    for await (const event of client) events.push(event.data)
    return events
  })()
  controller.abort()
  t.equal(client.state, 'closed')
  t.same(await iterating, [], 'the iterator ends')
  other.close()
  other.close()
  await until(() => app.openEventStreams === 0, 'the server sees both streams end')
  t.equal(client.error, undefined)
  const aborted = connect(url, { signal: AbortSignal.abort() })
  t.equal(aborted.state, 'closed', 'an aborted signal: closed at once, no request')
  for await (const event of aborted) t.fail(`no event: ${event.type}`)
})

t.test('the hub: reconnects resume with no gap; an id the history cannot place gets a typed resync', async t => {
  const app = await build(t, { retry: 10 })
  const streams = new Set<{ close: () => Promise<void> }>()
  app.get('/events', async (_request, reply) => {
    const stream = reply.sse()
    streams.add(stream)
    await app.eventHub.subscribe(stream, ['news'])
  })
  const url = await listen(app) + '/events'
  const client = connect<{ news: { n: number } }>(url)
  t.teardown(client.close)
  const numbers: number[] = []
  client.on('news', data => numbers.push(data.n))
  await state(client, s => s === 'open')
  for (let n = 1; n <= 60; n++) {
    await app.eventHub.send('news', 'news', { n })
    if (n % 15 === 0) await Promise.all(Array.from(streams, stream => stream.close()))
  }
  await until(() => numbers.length >= 60, 'sixty events')
  t.same(numbers, Array.from({ length: 60 }, (_, i) => i + 1), 'every event once, in order, across four drops')

  const stale = connect<{ news: { n: number } }>(url, { lastEventId: '12345' })
  t.teardown(stale.close)
  const resyncs: unknown[] = []
  stale.on('resync', (data, event) => resyncs.push([data.lastEventId, data.topics, event.type, event.lastEventId !== '12345']))
  await until(() => resyncs.length === 1, 'the resync')
  t.same(resyncs, [['12345', ['news'], 'resync', true]], 'the resync carries the id it could not place; the stream moves to the head')
})

t.test('a resync event of another name (the server\'s hub.resyncEvent)', async t => {
  const app = await build(t, { hub: { resyncEvent: 'start-over' } })
  app.get('/events', async (_request, reply) => { await app.eventHub.subscribe(reply.sse(), ['a']) })
  const client = connect(await listen(app) + '/events', { lastEventId: '1', resyncEvent: 'start-over' })
  t.teardown(client.close)
  const [data] = await once(eventsOf(client, 'resync'), 'event')
  t.same(data, { lastEventId: '1', topics: ['a'] })
})

t.test('storage: the last id is saved as it changes, and a new client starts from it', async t => {
  const { url, seen } = await server(t, async (n, reply) => {
    const stream = reply.sse()
    await stream.message('a', { id: `s${n}-1` })
    await stream.comment()
    await stream.message('b', { id: `s${n}-2` })
  })
  const saved: string[] = []
  let stored: string | null = null
  const storage = { load: () => stored, save: (id: string) => { saved.push(id); stored = id } }
  const first = connect(url, { storage })
  await until(() => first.lastEventId === 's0-2', 'two events')
  first.close()
  t.ok(saved.at(-1) === 's0-2' && saved.length <= 2)
  const second = connect(url, { storage, lastEventId: 'ignored: storage has one' })
  t.teardown(second.close)
  await until(() => seen.length === 2, 'the second client')
  t.equal(seen[1].headers['last-event-id'], 's0-2', 'a new page resumes from the stored id')

  const failing = connect(url, { storage: { load: () => { throw new Error('blocked') }, save: () => { throw new Error('full') } }, lastEventId: 'fallback' })
  t.teardown(failing.close)
  await until(() => failing.lastEventId === 's2-2', 'events despite a failing storage')
  t.equal(seen[2].headers['last-event-id'], 'fallback')
  // In Node there is no sessionStorage: the client works without resuming across loads.
  const noStorage = connect(url, { storage: 'session' })
  t.teardown(noStorage.close)
  await until(() => noStorage.lastEventId === 's3-2', 'events without a storage area')
})

t.test('the async iterator pulls: while it holds an event, the client reads no more and the server waits', async t => {
  let written = 0
  const chunk = 'x'.repeat(1024)
  const { url } = await server(t, async (_n, reply) => {
    const stream = reply.sse()
    while (!stream.signal.aborted && written < 100_000) {
      if (await stream.message(chunk, { id: String(++written) })) continue
    }
  })
  const client = connect(url)
  t.teardown(client.close)
  const iterator = client[Symbol.asyncIterator]()
  const first = await iterator.next()
  t.equal(first.value?.id, '1')
  // The socket buffers fill and the server's writes wait; then nothing moves while the reader holds.
  let before = -1
  while (before !== written) {
    before = written
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  t.ok(written < 100_000, `the server stopped at ${written} events (${Math.round(written / 1024)} MiB in buffers)`)
  let expected = 2
  const stopped = written
  for (let i = 0; i < stopped + 500; i++) {
    const { value } = await iterator.next()
    if (value?.id !== String(expected++)) return t.fail(`event ${value?.id} where ${expected - 1} was due`)
  }
  t.ok(written > stopped, 'reading again lets the server go on')
  await iterator.return?.()
  t.pass('every event in order')
})

t.test('a listener that throws is reported as uncaught; the stream and the other listeners go on', async t => {
  const { url } = await server(t, async (_n, reply) => {
    const stream = reply.sse()
    await stream.message('1')
    await stream.message('2')
  })
  const client = connect(url)
  t.teardown(client.close)
  const got: string[] = []
  // tap's own handler would fail the test: it steps aside while this one catches the report.
  const taps = process.rawListeners('uncaughtException') as Array<(err: Error) => void>
  process.removeAllListeners('uncaughtException')
  const reported = new Promise<Error>(resolve => process.once('uncaughtException', resolve))
  t.teardown(() => { for (const listener of taps) process.on('uncaughtException', listener) })
  client.on('message', data => { if (data === '1') throw new Error('a bug in the app') })
  client.on('message', data => got.push(data))
  await until(() => got.length === 2, 'both events')
  t.match(await reported, { message: 'a bug in the app' })
})

t.test('options that cannot work throw FST_SSE_CLIENT_INVALID_OPTION; a URL function that fails stops the client', async t => {
  const invalid = { code: 'FST_SSE_CLIENT_INVALID_OPTION' }
  t.throws(() => connect(42 as unknown as string), invalid)
  t.throws(() => connect(() => '/x', { storage: 'session' }), invalid)
  t.throws(() => connect(() => '/x', { share: true }), invalid)
  t.throws(() => connect('/x', { retry: -1 }), invalid)
  t.throws(() => connect('/x', { maxRetryDelay: 1.5 }), invalid)
  t.throws(() => connect('/x', { storage: {} as never }), invalid)
  t.throws(() => connect('/x', { storage: 'disk' as never }), invalid)
  t.throws(() => connect('/x', { body: 'x' }), invalid, 'a GET has no body')
  t.throws(() => connect('/x', { lastEventId: 'a\nb' }), invalid)
  t.ok(connect('http://127.0.0.1:9/x', { body: null, signal: AbortSignal.abort() }))
  const err = t.throws(() => connect('/x', { retry: Number.NaN })) as EventClientError
  t.ok(err instanceof EventClientError && err.name === 'EventClientError')
  // In Node a relative URL has no page to resolve against.
  const client = connect(() => '/relative', { key: 'k' })
  const error = await state(client, s => s === 'closed')
  t.equal(error?.code, 'FST_SSE_CLIENT_INVALID_OPTION')
})

t.test('storage \'session\' and \'local\' use the page\'s storage areas; a blocked one costs only the resume', async t => {
  const { url, seen } = await server(t, async (n, reply) => { await reply.sse().message('x', { id: `id${n}` }) })
  const items = new Map<string, string>([['fastify-event-stream:' + url, 'stored-before']])
  const session = { getItem: (key: string) => items.get(key) ?? null, setItem: (key: string, value: string) => { items.set(key, value) } }
  const areas = Object.getOwnPropertyDescriptors(globalThis)
  Object.defineProperty(globalThis, 'sessionStorage', { value: session, configurable: true })
  Object.defineProperty(globalThis, 'localStorage', { get () { throw new DOMException('denied', 'SecurityError') }, configurable: true })
  t.teardown(() => {
    for (const name of ['sessionStorage', 'localStorage'] as const) {
      const area = areas[name]
      if (area === undefined) Reflect.deleteProperty(globalThis, name)
      else Object.defineProperty(globalThis, name, area)
    }
  })
  const client = connect(url, { storage: 'session' })
  await until(() => client.lastEventId === 'id0', 'an event')
  client.close()
  t.equal(seen[0].headers['last-event-id'], 'stored-before')
  t.equal(items.get('fastify-event-stream:' + url), 'id0')
  const blocked = connect(url, { storage: 'local', key: 'k' })
  t.teardown(blocked.close)
  await until(() => blocked.lastEventId === 'id1', 'an event with a blocked storage')
  t.equal(seen[1].headers['last-event-id'], undefined)
})

t.test('a relative URL resolves against the page\'s location', async t => {
  const { url, seen } = await server(t, async (_n, reply) => { await reply.sse().message('x') })
  Object.defineProperty(globalThis, 'location', { value: { href: new URL('/page/index.html', url).href }, configurable: true })
  t.teardown(() => Reflect.deleteProperty(globalThis, 'location'))
  const client = connect('../events?a=1')
  t.teardown(client.close)
  await state(client, s => s === 'open')
  t.equal(seen.length, 1)
})

t.test('close() while a request is under way, or while waiting to retry, ends it at once', async t => {
  let answered = 0
  const { url } = await server(t, async (n, reply) => {
    answered++
    if (n === 0) return await new Promise(() => {}) // never answers
    return reply.code(500).send()
  })
  const hanging = connect(url)
  await until(() => answered === 1, 'the request')
  hanging.close()
  t.equal(hanging.state, 'closed')
  const waiting = connect(url, { retry: 60_000 })
  await state(waiting, (_s, e) => e?.status === 500)
  const started = Date.now()
  waiting.close()
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(answered, 2, 'no attempt after close()')
  t.ok(Date.now() - started < 1000)
})

t.test('a 200 with no content type stops the client', async t => {
  const { url } = await server(t, async (_n, reply) => {
    reply.hijack()
    reply.raw.writeHead(200)
    reply.raw.end()
  })
  const client = connect(url)
  const error = await state(client, s => s === 'closed')
  t.equal(error?.code, 'FST_SSE_CLIENT_CONTENT_TYPE')
  t.match(error?.message, /no content type/)
})

t.test('close() from a listener: the rest of that chunk\'s events are not delivered', async t => {
  const { url } = await server(t, async (_n, reply) => {
    const stream = reply.sse()
    // Written in one tick, they leave in one write: one chunk of three events.
    stream.message('1').catch(t.threw)
    stream.message('2').catch(t.threw)
    await stream.message('3')
  })
  const client = connect(url)
  const got: string[] = []
  client.on('message', data => {
    got.push(data)
    client.close()
  })
  await state(client, s => s === 'closed')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.same(got, ['1'])
})

t.test('a HEAD request: the stream opens with no body, and is tried again after retry', async t => {
  const { seen } = await server(t, async (_n, reply) => { await reply.sse().message('x') })
  const app = await build(t, {}, { forceCloseConnections: true })
  app.head('/events', (_request, reply) => { reply.sse() })
  const url = await listen(app) + '/events'
  const client = connect(url, { method: 'HEAD', retry: 10 })
  t.teardown(client.close)
  const states: string[] = []
  client.onState(state => states.push(state))
  await until(() => states.length >= 4, 'two opens')
  t.same(states.slice(0, 4), ['open', 'connecting', 'open', 'connecting'])
  t.equal(seen.length, 0)
})
