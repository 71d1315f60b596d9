import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  FST_SSE_INVALID_OPTION, FST_SSE_INVALID_PRESENCE, MemoryStore, injectEventStream, type EventStream, type NewEvent, type FastifyEventStreamOptions, type InjectedEventStream,
  type ParsedEvent, type PresenceChange, type PresenceOption, type PresenceStore
} from '../index.js'
import { checkPresence, PresenceBook } from '../lib/presence.js'
import { build, captureLogs, until } from './helpers.js'

interface Query { topics: string[], presence?: PresenceOption }

async function presenceApp (t: Test, options: FastifyEventStreamOptions = {}, serverOptions: object = {}): Promise<{ app: FastifyInstance, streams: EventStream[] }> {
  const app = await build(t, { heartbeat: false, ...options }, serverOptions)
  const streams: EventStream[] = []
  app.get<{ Querystring: { q: string } }>('/events', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    const { topics, presence } = JSON.parse(request.query.q) as Query
    try {
      app.eventHub.subscribe(stream, topics, { presence }).catch(() => {})
    } catch (err) {
      stream.message((err as Error & { code: string }).code)
      stream.close()
    }
  })
  return { app, streams }
}

async function join (app: FastifyInstance, query: Query): Promise<{ response: InjectedEventStream, events: ParsedEvent[] }> {
  const response = await injectEventStream(app, { url: `/events?q=${encodeURIComponent(JSON.stringify(query))}` })
  const events: ParsedEvent[] = []
  ;(async () => { for await (const event of response) events.push(event) })().catch(() => {})
  return { response, events }
}

t.test('presence lists who is on a topic, one entry per id with its streams; count counts every stream', async t => {
  const { app } = await presenceApp(t)
  const hub = app.eventHub
  t.same(await hub.presence('doc'), { count: 0, members: [] }, 'nobody yet')
  const ann1 = await join(app, { topics: ['doc', 'chat'], presence: { id: 'ann', info: { name: 'Ann' } } })
  await join(app, { topics: ['doc'], presence: { id: 'ann', info: { name: 'Ann' } } })
  await join(app, { topics: ['doc'], presence: { id: 'bob' } })
  await join(app, { topics: ['doc'], presence: 'count' })
  await join(app, { topics: ['doc'] })
  t.same(await hub.presence('doc'), {
    count: 4,
    members: [{ id: 'ann', info: { name: 'Ann' }, streams: 2 }, { id: 'bob', streams: 1 }]
  }, 'two tabs of ann, bob, an anonymous counted stream; a stream without presence is not there')
  t.equal(await hub.presenceCount('doc'), 4)
  t.same(await hub.presence('chat'), { count: 1, members: [{ id: 'ann', info: { name: 'Ann' }, streams: 1 }] })
  // A stream that ends leaves at once, from every topic.
  await ann1.response.close()
  t.same(await hub.presence('chat'), { count: 0, members: [] })
  t.same((await hub.presence('doc')).members, [{ id: 'ann', info: { name: 'Ann' }, streams: 1 }, { id: 'bob', streams: 1 }])
  t.equal(await hub.presenceCount('doc'), 3)
  t.throws(() => hub.presence(''), { code: 'FST_SSE_INVALID_TOPIC' })
  t.throws(() => hub.presenceCount(5 as never), { code: 'FST_SSE_INVALID_TOPIC' })
})

t.test('unsubscribe() leaves presence too, and the stream stays open', async t => {
  const { app, streams } = await presenceApp(t)
  await join(app, { topics: ['doc'], presence: { id: 'ann' } })
  t.equal(await app.eventHub.presenceCount('doc'), 1)
  t.ok(app.eventHub.unsubscribe(streams[0]))
  t.equal(await app.eventHub.presenceCount('doc'), 0)
  t.notOk(streams[0].closed)
})

t.test('announce: a listed member\'s join and leave are events on its topics, counted streams are not announced', async t => {
  const { app } = await presenceApp(t, { hub: { presence: { announce: true } } })
  const watcher = await join(app, { topics: ['doc'] })
  const ann = await join(app, { topics: ['doc'], presence: { id: 'ann', info: { color: 'red' } } })
  await join(app, { topics: ['doc'], presence: 'count' })
  await until(() => watcher.events.length >= 1, 'join')
  await ann.response.close()
  await until(() => watcher.events.length >= 2, 'leave')
  t.same(watcher.events.map(event => [event.type, JSON.parse(event.data)]), [
    ['join', { id: 'ann', info: { color: 'red' } }],
    ['leave', { id: 'ann', info: { color: 'red' } }]
  ])
  t.equal(ann.events[0].type, 'join', 'the member gets its own join, as every subscriber does')
})

t.test('a presence event that cannot be published is logged, not thrown; a closed hub announces nothing', async t => {
  const { logger, lines } = captureLogs('warn')
  const inner = new MemoryStore()
  const store = {
    readAfter: inner.readAfter.bind(inner),
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner),
    async append (topic: string, event: NewEvent) {
      if (event.event === 'leave') throw new Error('store down')
      return await inner.append(topic, event)
    }
  }
  const { app, streams } = await presenceApp(t, { hub: { store, presence: { announce: true } } }, { logger })
  const ann = await join(app, { topics: ['doc'], presence: { id: 'ann' } })
  await until(() => ann.events.length === 1, 'the join')
  await ann.response.close()
  await until(() => lines.some(line => line.msg === 'event hub failed to publish a presence event'), 'the log line')
  t.match(lines.find(line => line.msg === 'event hub failed to publish a presence event'), { topic: 'doc', event: 'leave', err: { message: 'store down' } })
  // Streams still open when the hub closes leave without an announcement.
  await join(app, { topics: ['doc'], presence: { id: 'bob' } })
  await app.eventHub.close()
  t.ok(app.eventHub.unsubscribe(streams[1]))
  await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(lines.filter(line => line.msg === 'event hub failed to publish a presence event').length, 1)
})

t.test('bad presence: coded errors, before the stream joins anything', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /expected 'count' or \{ id, info\? \}, got null/],
    ['everyone', /got string/],
    [['ann'], /got an array/],
    [{}, /id must be a string of 1 to 128 characters/],
    [{ id: '' }, /id must be a string/],
    [{ id: 'x'.repeat(129) }, /id must be a string/],
    [{ id: 'ann', name: 'Ann' }, /unknown \["name"\]/],
    [{ id: 'ann', info: 'x'.repeat(2000) }, /info is more than 1024 bytes as JSON/],
    [{ id: 'ann', info: { n: 1n } }, /info cannot be written as JSON/]
  ]
  for (const [presence, message] of bad) t.throws(() => checkPresence(presence), { code: 'FST_SSE_INVALID_PRESENCE', message }, String(message))
  t.same(JSON.parse(checkPresence({ id: 'ann', info: 'x'.repeat(1022) }) as string), { id: 'ann', info: 'x'.repeat(1022) }, 'info of 1 KiB as JSON is fine')
  t.throws(() => checkPresence({ id: 'ann', info: 'x'.repeat(1023) }), /more than 1024 bytes/)
  t.throws(() => checkPresence({ id: 'ann', info: () => 1 }), /info cannot be written as JSON \(function\)/)
  t.equal(checkPresence('count'), null)
  const { app } = await presenceApp(t)
  const refused = await join(app, { topics: ['doc'], presence: { id: '' } })
  await until(() => refused.events.length === 1, 'the refusal')
  t.equal(refused.events[0].data, 'FST_SSE_INVALID_PRESENCE')
  t.same(await app.eventHub.presence('doc'), { count: 0, members: [] })
  t.same(app.eventHub.stats().subscribers, {}, 'it joined no topic')
  t.ok(new FST_SSE_INVALID_PRESENCE('x') instanceof TypeError)
  await t.rejects(build(t, { hub: { presence: { ttl: 100 } } }), { code: 'FST_SSE_INVALID_OPTION', message: /hub.presence.ttl: expected at least 300 ms, got 100/ })
  await t.rejects(build(t, { hub: { presence: { ttl: 1.5 } } }), FST_SSE_INVALID_OPTION)
  await t.rejects(build(t, { hub: { presence: { announce: 'yes' as never } } }), { message: /hub.presence.announce: expected a boolean, got string/ })
})

/** A presence store in memory that records what the book sends it, and can lose everything (a Redis restart). */
function recordingStore (): PresenceStore & { updates: PresenceChange[][], entries: Map<string, Map<string, string>>, counts: Map<string, number>, fail: boolean } {
  const store = {
    updates: [] as PresenceChange[][],
    entries: new Map<string, Map<string, string>>(),
    counts: new Map<string, number>(),
    fail: false,
    closed: false,
    async update (changes: PresenceChange[]) {
      if (store.fail) throw new Error('store down')
      store.updates.push(changes)
      for (const change of changes) {
        const { topic, count, joined, left } = change
        const entries = store.entries.get(topic) ?? new Map<string, string>()
        if (change.replace === true) entries.clear()
        for (const [key, member] of joined) entries.set(key, member)
        for (const key of left) entries.delete(key)
        store.entries.set(topic, entries)
        store.counts.set(topic, count)
      }
    },
    async refresh (counts: Map<string, number>, state: (topic: string) => PresenceChange) {
      if (store.fail) throw new Error('store down')
      const lost = [...counts.keys()].filter(topic => !store.counts.has(topic))
      if (lost.length > 0) await store.update(lost.map(state))
    },
    async read (topic: string, listed: boolean) {
      return { count: store.counts.get(topic) ?? 0, members: listed ? [...(store.entries.get(topic)?.values() ?? [])] : [] }
    },
    async close () { store.closed = true }
  }
  return store
}

t.test('with a store: a tick\'s changes go in one update, renewals write back what the store lost, failures are reported', async t => {
  const store = recordingStore()
  const errors: unknown[] = []
  const book = new PresenceBook(store, 20, err => errors.push(err))
  const a = book.join(['doc', 'chat'], '{"id":"ann"}')
  const b = book.join(['doc'], null)
  const bob = book.join(['doc'], '{"id":"bob"}')
  t.same(await book.read('doc', true), { count: 3, members: [{ id: 'ann', streams: 1 }, { id: 'bob', streams: 1 }] }, 'a read waits for the tick\'s changes')
  t.equal(store.updates.length, 1, 'one update for the tick')
  t.same(store.updates[0].map(change => [change.topic, change.count, change.joined.length]), [['doc', 3, 2], ['chat', 1, 1]])
  book.leave(['doc', 'chat'], a)
  book.leave(['doc'], b)
  t.same(await book.read('doc', false), { count: 1, members: [] })
  t.same(store.updates[1].map(change => [change.topic, change.count, change.left]), [['doc', 1, [a]], ['chat', 0, [a]]])
  // Redis restarted: the renewal finds the topic gone and writes the instance's state again.
  store.entries.clear()
  store.counts.clear()
  await until(() => store.counts.get('doc') === 1, 'the renewal wrote doc again')
  t.same(await book.read('doc', true), { count: 1, members: [{ id: 'bob', streams: 1 }] })
  t.notOk(store.counts.has('chat'), 'a topic this instance left is not written back')
  store.fail = true
  const a2 = book.join(['doc'], '{"id":"ann"}')
  await until(() => errors.length >= 2, 'the failed update and renewal reported')
  t.match(String(errors[0]), /store down/)
  // Ann left while the store was down: the renewal after it writes the topic whole, her entry gone.
  book.leave(['doc'], a2)
  await new Promise(resolve => setTimeout(resolve, 30))
  store.fail = false
  await until(() => store.counts.get('doc') === 1 && store.entries.get('doc')?.size === 1, 'the topic written whole after the failure')
  t.same(await book.read('doc', true), { count: 1, members: [{ id: 'bob', streams: 1 }] })
  // Everyone left while the store was down: the topic is written whole as empty, and renewals then have nothing to do.
  store.fail = true
  book.leave(['doc'], bob)
  await until(() => errors.length >= 3, 'the failed leave')
  store.fail = false
  await until(() => store.counts.get('doc') === 0 && store.entries.get('doc')?.size === 0, 'doc written empty')
  // Renewals go on with no topic: they write nothing back.
  await new Promise(resolve => setTimeout(resolve, 60))
  t.same([store.counts.get('doc'), store.entries.get('doc')?.size], [0, 0], 'still empty after renewals')
  await book.close()
  t.ok((store as unknown as { closed: boolean }).closed)
})

t.test('a store of the app\'s own can keep presence; its failures are logged as warnings, never thrown', async t => {
  const { logger, lines } = captureLogs('warn')
  const inner = new MemoryStore()
  const shared = recordingStore()
  const store = {
    append: inner.append.bind(inner),
    readAfter: inner.readAfter.bind(inner),
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner),
    presence: (ttl: number) => {
      t.equal(ttl, 1200, 'the hub passes its TTL')
      return shared
    }
  }
  const { app } = await presenceApp(t, { hub: { store, presence: { ttl: 1200 } } }, { logger })
  await join(app, { topics: ['doc'], presence: { id: 'ann' } })
  await until(() => shared.counts.get('doc') === 1, 'written to the app\'s store')
  t.same(await app.eventHub.presence('doc'), { count: 1, members: [{ id: 'ann', streams: 1 }] })
  shared.fail = true
  await join(app, { topics: ['doc'], presence: { id: 'bob' } })
  await until(() => lines.some(line => line.msg === 'event hub store failed to write presence; the next renewal writes it again'), 'the warning')
  shared.fail = false
})
