import Fastify, { type FastifyInstance } from 'fastify'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { EventSource } from 'undici'
import fastifyEventStream, {
  EventStream, MemoryStore, injectEventStream, type EventStore, type FastifyEventStreamOptions, type InjectedEventStream,
  type ParsedEvent
} from '../index.js'
import { build, captureLogs, get, listen, readUntil, tick, until } from './helpers.js'

interface HubApp {
  app: FastifyInstance
  streams: EventStream[]
  /** What each subscribe() call resolved to, in the order of the requests. */
  subscribed: Array<Promise<boolean>>
}

/** An app whose GET /events?topics=a,b&from=<id> subscribes the stream to the topics. */
async function hubApp (t: Test, options: FastifyEventStreamOptions = {}, serverOptions: object = {}): Promise<HubApp> {
  const app = await build(t, { heartbeat: false, ...options }, serverOptions)
  const streams: EventStream[] = []
  const subscribed: Array<Promise<boolean>> = []
  app.get<{ Querystring: { topics?: string, from?: string } }>('/events', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    const { topics = 'a', from } = request.query
    subscribed.push(app.eventHub.subscribe(stream, topics.split(','), from === undefined ? {} : { lastEventId: from }))
  })
  return { app, streams, subscribed }
}

interface Reader {
  response: InjectedEventStream
  events: ParsedEvent[]
  /** Resolves once `count` events arrived. */
  received: (count: number) => Promise<void>
}

/** Opens /events through inject and reads its events in the background; resolves once the stream is live. */
async function subscribe ({ app, subscribed }: HubApp, query: string, headers: Record<string, string> = {}): Promise<Reader> {
  const response = await injectEventStream(app, { url: `/events?${query}`, headers })
  const events: ParsedEvent[] = []
  ;(async () => { for await (const event of response) events.push(event) })().catch(() => {})
  if (!(await subscribed[subscribed.length - 1])) throw new Error('the subscription did not go live')
  return { response, events, received: count => until(() => events.length >= count, `${count} events`) }
}

const data = (events: ParsedEvent[]): string[] => events.map(event => event.data)

/** Reads a stream to its end. */
async function drain (response: InjectedEventStream): Promise<ParsedEvent[]> {
  const events = []
  for await (const event of response) events.push(event)
  return events
}

/** A MemoryStore that counts its live listeners, and can be told to fail or to hold calls. */
function countingStore (inner = new MemoryStore()): EventStore & { listening: number, closed: boolean } {
  const store = {
    listening: 0,
    closed: false,
    append: inner.append.bind(inner),
    readAfter: inner.readAfter.bind(inner),
    async listen (topic: string, listener: Parameters<EventStore['listen']>[1]) {
      const stop = await inner.listen(topic, listener)
      store.listening++
      return async () => { store.listening--; await stop() }
    },
    async close () { store.closed = true; await inner.close() }
  }
  return store
}

t.test('one publish is encoded once: every subscriber gets the same bytes', async t => {
  const hub = await hubApp(t)
  const readers = [await subscribe(hub, 'topics=news'), await subscribe(hub, 'topics=news'), await subscribe(hub, 'topics=news')]
  const frames: Uint8Array[] = []
  const write = EventStream.prototype.write
  EventStream.prototype.write = function (frame) { frames.push(frame); return write.call(this, frame) }
  t.teardown(() => { EventStream.prototype.write = write })
  const id = await hub.app.eventHub.publish('news', 'line 1\nline 2', { event: 'headline' })
  for (const reader of readers) await reader.received(1)
  t.equal(frames.length, 3)
  t.ok(frames.every(frame => frame === frames[0]), 'one Buffer for the three streams')
  t.equal(Buffer.from(frames[0]).toString(), `id: ${id}\nevent: headline\ndata: line 1\ndata: line 2\n\n`)
  for (const reader of readers) t.same(reader.events, [{ type: 'headline', data: 'line 1\nline 2', lastEventId: id, id }])
})

t.test('order: a stream on several topics gets their events in publish order, and only theirs', async t => {
  const hub = await hubApp(t)
  const both = await subscribe(hub, 'topics=a,b')
  const onlyB = await subscribe(hub, 'topics=b')
  const { eventHub } = hub.app
  // Not awaited: the order is the order of the calls.
  for (const [topic, text] of [['a', 'a1'], ['b', 'b1'], ['c', 'c1'], ['a', 'a2'], ['b', 'b2']]) eventHub.publish(topic, text)
  eventHub.send('b', 'json', { n: 3 })
  await both.received(5)
  await onlyB.received(3)
  t.same(data(both.events), ['a1', 'b1', 'a2', 'b2', '{"n":3}'])
  t.same(data(onlyB.events), ['b1', 'b2', '{"n":3}'])
  t.equal(onlyB.events[2].type, 'json')
  const ids = both.events.map(event => Number(event.id))
  t.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'ids increase strictly')
})

t.test('a new subscriber first gets the current position as an id-only frame (no event dispatched)', async t => {
  const hub = await hubApp(t)
  const earlier = await hub.app.eventHub.publish('a', 'before')
  const response = await hub.app.inject({ url: '/events?topics=a', payloadAsStream: true })
  await hub.subscribed[0]
  hub.app.eventHub.publish('a', 'after', { id: 'after-1' })
  const body = await readUntil(response.stream(), 'after\n\n')
  t.equal(body, `id: ${earlier}\n\nid: after-1\ndata: after\n\n`)
  response.stream().destroy()
})

t.test('a real EventSource resumes without a gap: position frame, drop, events while away, replay', async t => {
  const hub = await hubApp(t, { retry: 20 })
  hub.app.post('/drop', async () => { await Promise.all(hub.streams.map(stream => stream.close())) })
  const base = await listen(hub.app)
  const source = new EventSource(`${base}/events?topics=room`)
  t.teardown(() => source.close())
  const seen: Array<{ data: string, lastEventId: string }> = []
  source.onmessage = event => seen.push({ data: event.data, lastEventId: event.lastEventId })
  await until(() => hub.subscribed.length === 1, 'the first connection')
  await hub.subscribed[0]
  // Nothing was published to this client yet: only the position frame tells it where it is.
  await fetch(`${base}/drop`, { method: 'POST' })
  const missed = []
  for (let i = 0; i < 3; i++) missed.push(await hub.app.eventHub.publish('room', `while away ${i}`))
  await until(() => seen.length === 3, 'the replay after the reconnect')
  t.equal(hub.streams.length, 2, 'the client reconnected by itself')
  t.equal(hub.streams[1].lastEventId, String(Number(missed[0]) - 1), 'with the position it was given as Last-Event-ID')
  await hub.app.eventHub.publish('room', 'live')
  await until(() => seen.length === 4, 'the live event')
  t.same(seen.map(event => event.data), ['while away 0', 'while away 1', 'while away 2', 'live'])
  t.same(seen.slice(0, 3).map(event => event.lastEventId), missed)
})

t.test('replay: a stream with Last-Event-ID gets every later event of its topics, then live ones', async t => {
  const hub = await hubApp(t)
  const { eventHub } = hub.app
  const ids = []
  for (let i = 1; i <= 5; i++) ids.push(await eventHub.publish(i % 2 === 0 ? 'b' : 'a', `e${i}`))
  const reader = await subscribe(hub, 'topics=a,b', { 'last-event-id': ids[1] })
  await eventHub.publish('a', 'e6')
  await reader.received(4)
  t.same(data(reader.events), ['e3', 'e4', 'e5', 'e6'])
  t.same(reader.events.map(event => event.id), [...ids.slice(2), String(Number(ids[4]) + 1)])
  const fromOption = await subscribe(hub, `topics=b&from=${ids[0]}`)
  await fromOption.received(2)
  t.same(data(fromOption.events), ['e2', 'e4'], 'lastEventId given as an option')
  const empty = await hub.app.inject({ url: '/events?topics=b&from=', payloadAsStream: true })
  t.match(await readUntil(empty.stream(), '\n\n'), /^id: \d+\n\n/, 'an empty lastEventId is no id: the position frame')
  empty.stream().destroy()
})

t.test('publisher ids travel on the wire and resume like the hub\'s own', async t => {
  const hub = await hubApp(t)
  const { eventHub } = hub.app
  t.equal(await eventHub.publish('a', 'one', { id: 'msg-1' }), 'msg-1')
  await eventHub.publish('a', 'two', { id: 'msg-2' })
  const reader = await subscribe(hub, 'topics=a', { 'last-event-id': 'msg-1' })
  await reader.received(1)
  t.same(reader.events, [{ type: 'message', data: 'two', lastEventId: 'msg-2', id: 'msg-2' }])
  await t.rejects(eventHub.publish('a', 'again', { id: 'msg-2' }), { code: 'FST_SSE_INVALID_ID' })
})

t.test('resync: an id the history cannot place gives one in-band event with the current position, then live', async t => {
  const hub = await hubApp(t, { hub: { historySize: 2 } })
  const { eventHub } = hub.app
  const ids = []
  for (let i = 0; i < 4; i++) ids.push(await eventHub.publish('a', `e${i}`))
  for (const [lastEventId, why] of [['nonsense', 'unknown'], [ids[0], 'older than the history'], ['99', 'from an earlier run']]) {
    const reader = await subscribe(hub, 'topics=a', { 'last-event-id': lastEventId })
    await reader.received(1)
    t.same(reader.events[0], {
      type: 'resync', data: JSON.stringify({ lastEventId, topics: ['a'] }), lastEventId: ids[3], id: ids[3]
    }, why)
    await reader.response.close()
  }
  const kept = await subscribe(hub, 'topics=a', { 'last-event-id': ids[1] })
  await kept.received(2)
  t.same(data(kept.events), ['e2', 'e3'], 'the oldest kept position still replays')
  const reader = await subscribe(hub, 'topics=a', { 'last-event-id': 'nonsense' })
  const live = await eventHub.publish('a', 'live')
  await reader.received(2)
  t.same(reader.events[1], { type: 'message', data: 'live', lastEventId: live, id: live })
})

t.test('resync: the event type is configurable', async t => {
  const hub = await hubApp(t, { hub: { resyncEvent: 'app.reload' } })
  const reader = await subscribe(hub, 'topics=a', { 'last-event-id': 'gone' })
  await reader.received(1)
  t.equal(reader.events[0].type, 'app.reload')
})

t.test('a Last-Event-ID coerced to a number by the route schema resumes too', async t => {
  const app = await build(t, { heartbeat: false })
  const streams: Array<Promise<boolean>> = []
  app.get('/events', { schema: { headers: { type: 'object', properties: { 'last-event-id': { type: 'integer' } } } } }, (_request, reply) => {
    const stream = reply.sse()
    t.equal(typeof stream.lastEventId, 'number')
    streams.push(app.eventHub.subscribe(stream, 'a'))
  })
  const first = await app.eventHub.publish('a', 'one')
  await app.eventHub.publish('a', 'two')
  const response = await injectEventStream(app, { url: '/events', headers: { 'last-event-id': first } })
  const { value } = await response[Symbol.asyncIterator]().next()
  t.equal(value?.data, 'two')
  await response.close()
})

t.test('streams leave their topics however they end, and a topic nobody reads stops its listener', async t => {
  const store = countingStore()
  const { logger, lines } = captureLogs('warn')
  const hub = await hubApp(t, { maxBufferedBytes: 64 * 1024, hub: { store } }, { logger })
  hub.app.get('/throws', async (_request, reply) => {
    const stream = reply.sse()
    await hub.app.eventHub.subscribe(stream, 'a')
    throw new Error('handler failed after subscribing')
  })
  const { eventHub } = hub.app
  const empty = async (why: string): Promise<void> => {
    await until(() => Object.keys(eventHub.stats().subscribers).length === 0 && store.listening === 0, why)
    t.pass(why)
  }
  const reader = await subscribe(hub, 'topics=a,b')
  t.equal(store.listening, 2)
  await hub.streams[0].close()
  await empty('close() on the server')

  await subscribe(hub, 'topics=a')
  t.ok(eventHub.unsubscribe(hub.streams[1]))
  t.notOk(eventHub.unsubscribe(hub.streams[1]), 'a second unsubscribe is a no-op')
  t.equal(hub.streams[1].closed, false, 'unsubscribe() leaves the stream open')
  await empty('unsubscribe()')

  await (await subscribe(hub, 'topics=a')).response.close()
  await empty('the inject client left')

  const base = await listen(hub.app)
  const client = await get(`${base}/events?topics=a`)
  await hub.subscribed[3]
  client.destroy()
  await empty('a real client disconnected')

  t.same(await drain(await injectEventStream(hub.app, '/throws')), [])
  await empty('the handler threw after subscribing')

  const slow = await get(`${base}/events?topics=big`)
  slow.pause()
  await hub.subscribed[4]
  const slowStream = hub.streams[4]
  const big = 'x'.repeat(16 * 1024)
  for (let i = 0; i < 5000 && !slowStream.closed; i++) { eventHub.publish('big', big); await tick() }
  await empty('a slow client was cut off')
  t.equal(eventHub.stats().cutOff, 1)
  t.ok(lines.some(line => line.msg.includes('too slow')))
  slow.destroy()

  await subscribe(hub, 'topics=a,c')
  await subscribe(hub, 'topics=c')
  t.equal(store.listening, 2)
  await hub.app.close()
  t.equal(store.listening, 0, 'shutdown')
  t.equal(store.closed, true, 'the store closed with the app')
  t.equal(reader.response.statusCode, 200)
})

t.test('counters: open streams, subscribers per topic, published, delivered, cut off', async t => {
  const hub = await hubApp(t)
  hub.app.get('/plain', (_request, reply) => { reply.sse() })
  const { eventHub } = hub.app
  t.has(eventHub.stats(), { openStreams: 0, subscribers: {}, published: 0, delivered: 0, cutOff: 0, endedByAge: 0, endedByShutdown: 0 })
  const first = await eventHub.publish('a', 'kept')
  const a1 = await subscribe(hub, 'topics=a')
  const a2 = await subscribe(hub, 'topics=a,b', { 'last-event-id': String(Number(first) - 1) })
  await subscribe(hub, 'topics=b')
  await injectEventStream(hub.app, '/plain')
  await eventHub.publish('a', 'to two')
  await eventHub.publish('b', 'to two as well')
  await eventHub.publish('nobody', 'to none')
  await a1.received(1)
  await a2.received(3)
  t.has(eventHub.stats(), {
    openStreams: 4, subscribers: { a: 2, b: 2 }, published: 4, delivered: 1 + 2 + 2, cutOff: 0, endedByAge: 0, endedByShutdown: 0
  }, '1 replayed, 2 + 2 live; position frames are not deliveries')
  await a2.response.close()
  t.same(eventHub.stats().subscribers, { a: 1, b: 1 })
  t.equal(Object.getPrototypeOf(eventHub.stats().subscribers), null, 'a topic named __proto__ is just a key')
})

t.test('counters: a store that keeps counters of its own shows them as stats().store', async t => {
  const inner = new MemoryStore()
  let reads = 0
  const store: EventStore = {
    append: inner.append.bind(inner),
    readAfter: async (topics, id) => { reads++; return await inner.readAfter(topics, id) },
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner),
    stats: () => ({ reads })
  }
  const hub = await hubApp(t, { hub: { store } })
  t.same(hub.app.eventHub.stats().store, { reads: 0 })
  await subscribe(hub, 'topics=a')
  t.same(hub.app.eventHub.stats().store, { reads: 1 }, 'a snapshot taken at each call')
})

t.test('no gap, no duplicate: publishes racing a replay, in every order fast-check finds', async t => {
  await fc.assert(fc.asyncProperty(
    fc.scheduler(),
    fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 8 }),
    fc.nat(),
    fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 8 }),
    async (s, before, resumeAt, during) => {
      const inner = new MemoryStore()
      // Every call into the store is held until the scheduler lets it run, in an order it chooses.
      const store: EventStore = {
        append: s.scheduleFunction(inner.append.bind(inner)),
        readAfter: s.scheduleFunction(inner.readAfter.bind(inner)),
        listen: s.scheduleFunction(inner.listen.bind(inner)),
        close: () => inner.close()
      }
      const app = Fastify()
      await app.register(fastifyEventStream, { heartbeat: false, hub: { store } })
      let subscribed!: Promise<boolean>
      app.get('/events', (_request, reply) => { subscribed = app.eventHub.subscribe(reply.sse(), ['a', 'b']) })
      try {
        const ids = [String((await inner.readAfter([], undefined)).head)]
        for (const [i, topic] of before.entries()) ids.push(await s.waitFor(app.eventHub.publish(topic, `before ${i}`)))
        const resume = ids[resumeAt % ids.length]
        const response = await injectEventStream(app, { url: '/events', headers: { 'last-event-id': resume } })
        during.forEach((topic, i) => { app.eventHub.publish(topic, `during ${i}`) })
        t.equal(await s.waitFor(subscribed), true)
        await s.waitAll()
        await s.waitFor(app.eventHub.publish('a', 'end'))
        const got: string[] = []
        for await (const event of response) {
          if (event.data === 'end') break
          got.push(`${event.id as string} ${event.data}`)
        }
        const truth = (await inner.readAfter(['a', 'b'], resume)).events ?? []
        const expected = truth.filter(event => event.data !== 'end').map(event => `${event.id} ${event.data}`)
        if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
      } finally {
        await app.close()
      }
    }
  ), { numRuns: 150 })
  t.pass('150 schedules')
})

/** A MemoryStore whose readAfter waits until `open()` is called. */
function gatedStore (inner = new MemoryStore()): EventStore & { open: () => void } {
  let open!: () => void
  const gate = new Promise<void>(resolve => { open = resolve })
  return {
    open,
    append: inner.append.bind(inner),
    async readAfter (topics, lastEventId) { await gate; return await inner.readAfter(topics, lastEventId) },
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner)
  }
}

t.test('a subscriber whose replay is held up while more than historySize live events arrive is cut off', async t => {
  const store = gatedStore()
  const { logger, lines } = captureLogs('warn')
  const hub = await hubApp(t, { hub: { store, historySize: 3 } }, { logger })
  const { eventHub } = hub.app
  const first = await eventHub.publish('a', 'before')
  const response = await injectEventStream(hub.app, { url: '/events?topics=a', headers: { 'last-event-id': first } })
  for (let i = 0; i < 3; i++) await eventHub.publish('a', `during ${i}`)
  t.equal(hub.streams[0].closed, false, 'three waiting events are within the bound')
  await eventHub.publish('a', 'one too many')
  await tick()
  t.equal(hub.streams[0].closed, true, 'cut off once the tick is written')
  store.open()
  t.equal(await hub.subscribed[0], false)
  t.same(eventHub.stats().subscribers, {})
  t.equal(eventHub.stats().cutOff, 1)
  t.match(lines.find(line => line.msg.includes('piled up')), { level: 40, pendingEvents: 4, maxPending: 3 })
  await response.close()
})

t.test('a stream that ends or is unsubscribed during its replay gets nothing more', async t => {
  const hub = await hubApp(t)
  const { eventHub } = hub.app
  const first = await eventHub.publish('a', 'first')
  let quick: Promise<boolean> | undefined
  hub.app.get('/quick', (_request, reply) => {
    const stream = reply.sse()
    quick = eventHub.subscribe(stream, 'a', { lastEventId: first })
    eventHub.unsubscribe(stream)
  })
  const big = 'y'.repeat(64 * 1024)
  for (let i = 0; i < 100; i++) await eventHub.publish('a', big)
  const base = await listen(hub.app)
  // The client does not read: the replay waits for the socket, then the stream is unsubscribed.
  const paused = await get(`${base}/events?topics=a`, { 'last-event-id': first })
  paused.pause()
  await until(() => hub.streams[0].closed || eventHub.stats().delivered > 3, 'the replay to start')
  t.ok(eventHub.unsubscribe(hub.streams[0]))
  paused.resume()
  t.equal(await hub.subscribed[0], false)
  const delivered = eventHub.stats().delivered
  t.ok(delivered < 100, `the replay stopped after ${delivered} of 100 frames`)
  await eventHub.publish('a', 'live')
  t.equal(eventHub.stats().delivered, delivered)
  hub.streams[0].close()
  paused.destroy()

  const leaving = await get(`${base}/events?topics=a`, { 'last-event-id': first })
  leaving.pause()
  await until(() => eventHub.stats().delivered > delivered + 3, 'the second replay to start')
  leaving.destroy()
  t.equal(await hub.subscribed[1], false, 'the client left during the replay')
  t.same(eventHub.stats().subscribers, {})

  const gone = await injectEventStream(hub.app, '/quick')
  t.equal(await quick, false, 'unsubscribed before the store answered')
  await gone.close()
})

t.test('a store that reports it cannot deliver a topic any more: its subscribers are closed (and resync), others stay', async t => {
  const inner = new MemoryStore()
  const failures = new Map<string, (err: Error) => void>()
  const store: EventStore = {
    append: inner.append.bind(inner),
    readAfter: inner.readAfter.bind(inner),
    async listen (topic, listener, onFailure) {
      failures.set(topic, onFailure as (err: Error) => void)
      return await inner.listen(topic, listener)
    },
    close: inner.close.bind(inner)
  }
  const { logger, lines } = captureLogs('error')
  const hub = await hubApp(t, { hub: { store } }, { logger })
  const [onA, onAB, onB] = [await subscribe(hub, 'topics=a'), await subscribe(hub, 'topics=a,b'), await subscribe(hub, 'topics=b')]
  failures.get('a')?.(new Error('history lost'))
  t.same(await drain(onA.response), [], 'the subscriber of a ended')
  t.same(await drain(onAB.response), [], 'so did the one of a and b')
  t.same(hub.app.eventHub.stats().subscribers, { b: 1 }, 'b\'s own subscriber stays')
  t.match(lines, [{ msg: 'event hub store failed to deliver a topic; closing its subscribers', topic: 'a', subscribers: 2, err: { message: 'history lost' } }])
  await hub.app.eventHub.publish('b', 'still here')
  await onB.received(1)
  t.same(data(onB.events), ['still here'])
})

t.test('a store that fails: the stream closes (the client reconnects), the error is logged, the next one works', async t => {
  const inner = new MemoryStore()
  let failListen = 2
  let failRead = 1
  let failStop = 0
  let held = Promise.resolve()
  const store: EventStore = {
    append: inner.append.bind(inner),
    async readAfter (topics, id) {
      if (failRead-- > 0) throw new Error('read failed')
      return await inner.readAfter(topics, id)
    },
    // Not async: the first failure is a synchronous throw, which the hub must handle like a rejection.
    listen (topic, listener) {
      if (failListen === 2) { failListen = 1; throw new Error('listen failed') }
      return (async () => {
        await held
        if (failListen-- > 0) throw new Error('listen failed')
        const stop = await inner.listen(topic, listener)
        return async () => {
          await stop()
          if (failStop-- > 0) throw new Error('stop failed')
        }
      })()
    },
    close: inner.close.bind(inner)
  }
  const { logger, lines } = captureLogs('error')
  const hub = await hubApp(t, { hub: { store } }, { logger })
  for (const failure of ['listen failed', 'listen failed', 'read failed']) {
    t.same(await drain(await injectEventStream(hub.app, '/events?topics=a')), [], 'the stream ended without an event')
    t.equal(await hub.subscribed[hub.subscribed.length - 1], false)
    t.match(lines.pop(), { msg: 'event hub store failed to subscribe a stream; closing it', err: { message: failure } })
  }
  const reader = await subscribe(hub, 'topics=a')
  await hub.app.eventHub.publish('a', 'works')
  await reader.received(1)
  failStop = 1
  await reader.response.close()
  await until(() => lines.length > 0, 'the stop failure to be logged')
  t.match(lines.pop(), { msg: 'event hub store failed to stop listening to a topic', err: { message: 'stop failed' } })

  // A failure after the stream already ended is not worth a log line.
  failListen = 1
  let release!: () => void
  held = new Promise(resolve => { release = resolve })
  const response = await injectEventStream(hub.app, '/events?topics=late')
  await response.close()
  release()
  t.equal(await hub.subscribed[hub.subscribed.length - 1], false)
  t.same(lines, [])
})

t.test('bad input: coded errors, thrown before anything is published or subscribed', async t => {
  const hub = await hubApp(t)
  const { eventHub } = hub.app
  const reader = await subscribe(hub, 'topics=a')
  const bad: Array<[() => unknown, string]> = [
    [() => eventHub.publish('', 'x'), 'FST_SSE_INVALID_TOPIC'],
    [() => eventHub.publish(7 as unknown as string, 'x'), 'FST_SSE_INVALID_TOPIC'],
    [() => eventHub.publish('a', Buffer.from('x') as unknown as string), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.publish('a', 'x', { id: 'a\nb' }), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.publish('a', 'x', { id: 'a\0b' }), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.publish('a', 'x', { id: 5 as unknown as string }), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.publish('a', 'x', { event: 'e\r' }), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.publish('a', 'x', { id: '12' }), 'FST_SSE_INVALID_ID'],
    [() => eventHub.publish('a', 'x', { id: '' }), 'FST_SSE_INVALID_ID'],
    [() => eventHub.send('a', 'e', undefined), 'FST_SSE_INVALID_FIELD'],
    [() => eventHub.subscribe(hub.streams[0], []), 'FST_SSE_INVALID_TOPIC'],
    [() => eventHub.subscribe(hub.streams[0], ['a', '']), 'FST_SSE_INVALID_TOPIC'],
    [() => eventHub.subscribe(hub.streams[0], 'a'), 'FST_SSE_ALREADY_SUBSCRIBED'],
    [() => eventHub.subscribe({ closed: false } as unknown as EventStream, 'a'), 'FST_SSE_INVALID_OPTION']
  ]
  for (const [call, code] of bad) t.throws(call, { code }, code)
  await eventHub.publish('a', 'good', { event: '' })
  await reader.received(1)
  t.same(reader.events, [{ type: 'message', data: 'good', lastEventId: reader.events[0].lastEventId, id: reader.events[0].id }])
  t.equal(eventHub.stats().published, 1)

  await hub.streams[0].close()
  t.equal(await eventHub.subscribe(hub.streams[0], 'b'), false, 'a closed stream is not subscribed')
  t.same(eventHub.stats().subscribers, {})
  await hub.app.close()
  await t.rejects(eventHub.publish('a', 'late'), { code: 'FST_SSE_HUB_CLOSED' })
  t.throws(() => eventHub.subscribe(hub.streams[0], 'a'), { code: 'FST_SSE_HUB_CLOSED' })
})

t.test('hub options are validated at registration', async t => {
  const store = countingStore()
  const cases: Array<[FastifyEventStreamOptions['hub'], string]> = [
    [{ store: {} as EventStore }, 'hub.store'],
    [{ store: { ...store, listen: 1 } as unknown as EventStore }, 'hub.store'],
    [{ store, historyAge: 1000 }, 'hub.historyAge'],
    [{ store, historySize: 0 }, 'hub.historySize'],
    [{ historySize: -1 }, 'hub.historySize'],
    [{ historyAge: 0.5 }, 'hub.historyAge'],
    [{ resyncEvent: '' }, 'hub.resyncEvent'],
    [{ resyncEvent: 'a\nb' }, 'hub.resyncEvent'],
    [{ resyncEvent: 5 as unknown as string }, 'hub.resyncEvent']
  ]
  for (const [hub, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyEventStream, { hub }).ready() }, { code: 'FST_SSE_INVALID_OPTION', message: new RegExp(name.replace('.', '\\.')) }, name)
  }
  const hub = await hubApp(t, { hub: { store, historySize: 10 } })
  await subscribe(hub, 'topics=x')
  t.equal(store.listening, 1, 'a store passed in is the one used')
})

t.test('a stream of another registration that ends leaves this hub at the next publish', async t => {
  const hub = await hubApp(t)
  const other = await build(t, { heartbeat: false })
  let stream: EventStream | undefined
  other.get('/elsewhere', (_request, reply) => { stream = reply.sse() })
  const response = await injectEventStream(other, '/elsewhere')
  t.equal(await hub.app.eventHub.subscribe(stream as EventStream, 'a'), true)
  await response.close()
  t.same(hub.app.eventHub.stats().subscribers, { a: 1 }, 'this hub did not hear of the end')
  await hub.app.eventHub.publish('a', 'x')
  await tick()
  t.same(hub.app.eventHub.stats().subscribers, {})
  t.equal(hub.app.eventHub.stats().delivered, 0)
})
