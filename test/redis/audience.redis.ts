// Filters and presence across instances sharing one Redis: real HTTP clients, instances in this process and one in a
// process of its own (killed with SIGKILL), a Redis of the test's own restarted under them.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { EventSource } from 'undici'
import fastifyEventStream, { type ParsedEvent, type PresenceOption, type TagFilter } from '../../index.js'
import { compileFilter } from '../../lib/filter.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { SHARED_REDIS, redisServer, sharedClient, sseClient, uniquePrefix, until, type SseClient } from './helpers.js'

interface Query { topics: string[], filter?: TagFilter, presence?: PresenceOption }

interface Instance { app: FastifyInstance, url: string, store: RedisStore }

async function instance (t: Test, connection: string, prefix: string, options: { historySize?: number, ttl?: number, announce?: boolean } = {}): Promise<Instance> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  const store = new RedisStore({ connection, prefix, historySize: options.historySize, timeout: 1000 })
  await app.register(fastifyEventStream, { heartbeat: false, hub: { store, presence: { ttl: options.ttl ?? 30_000, announce: options.announce ?? false } } })
  app.get<{ Querystring: { q: string } }>('/events', (request, reply) => {
    const { topics, filter, presence } = JSON.parse(request.query.q) as Query
    app.eventHub.subscribe(reply.sse(), topics, { filter, presence }).catch(() => {})
  })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, store, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
}

const url = (at: Instance | string, query: Query): string => `${typeof at === 'string' ? at : at.url}/events?q=${encodeURIComponent(JSON.stringify(query))}`

/** A client whose stream is live: it got the position frame. */
async function live (t: Test, at: Instance | string, query: Query, lastEventId?: string): Promise<SseClient> {
  const client = await sseClient(t, url(at, query), lastEventId)
  if (lastEventId === undefined) await until(() => client.lastEventId() !== '', 'the position frame')
  return client
}

const TEAMS = ['a', 'b', 'c']
/** Event i is tagged team a, b, c in turn, except every fourth, which has no tags. */
const publishMix = async (apps: FastifyInstance[], from: number, count: number): Promise<void> => {
  for (let i = from; i < from + count; i++) {
    const hub = apps[i % apps.length].eventHub
    await hub.publish('feed', `${i}:${i % 4 === 3 ? '-' : TEAMS[i % 3]}`, i % 4 === 3 ? {} : { tags: { team: TEAMS[i % 3] } })
  }
}
const passing = (from: number, to: number, team: (t: string) => boolean): string[] =>
  Array.from({ length: to - from }, (_, k) => from + k).filter(i => i % 4 !== 3 && team(TEAMS[i % 3])).map(i => `${i}:${TEAMS[i % 3]}`)
const texts = (events: ParsedEvent[]): string[] => events.map(event => event.data)

t.test('filters across instances: live on both, replay on the other after a reconnect, resync: never an event the filter rejects', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, SHARED_REDIS, prefix, { historySize: 20 })
  const b = await instance(t, SHARED_REDIS, prefix, { historySize: 20 })
  const onA = await live(t, a, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })
  const onB = await live(t, b, { topics: ['feed', 'other'], filter: { or: [{ tag: 'team', eq: 'b' }, { not: { tag: 'team', in: ['a', 'b', 'c'] } }] } })
  const all = await live(t, b, { topics: ['feed'] })
  await publishMix([a.app, b.app], 0, 12)
  await all.received(12)
  const wantB = texts(all.events).filter(data => data.endsWith(':b') || data.endsWith(':-'))
  await onA.received(passing(0, 12, team => team === 'a').length)
  await onB.received(wantB.length)
  await sleep(50)
  t.same(texts(onA.events), passing(0, 12, team => team === 'a'), 'live on A: team a only')
  t.same(texts(onB.events), wantB, 'live on B: b or untagged, in order')
  t.equal(wantB.length, 6)
  // A's client leaves; what it missed is replayed by B, filtered the same way.
  onA.close()
  await publishMix([a.app, b.app], 12, 8)
  const back = await live(t, b, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } }, onA.lastEventId())
  await back.received(passing(12, 20, team => team === 'a').length)
  await publishMix([a.app], 20, 4)
  await back.received(passing(12, 24, team => team === 'a').length)
  await sleep(50)
  t.same([...texts(onA.events), ...texts(back.events)], passing(0, 24, team => team === 'a'), 'every a event exactly once, across the reconnect')
  // An id older than the kept history: the resync frame, then filtered live events.
  await publishMix([a.app, b.app], 24, 30)
  const late = await sseClient(t, url(a, { topics: ['feed'], filter: { tag: 'team', eq: 'c' } }), onA.lastEventId())
  await late.received(1)
  t.equal(late.events[0].type, 'resync')
  await publishMix([b.app], 54, 6)
  await late.received(1 + passing(54, 60, team => team === 'c').length)
  await sleep(50)
  t.same(texts(late.events.slice(1)), passing(54, 60, team => team === 'c'))
  // The tags are kept in Redis with the event, for any instance's replay.
  const replay = await a.store.readAfter(['feed'], late.events[0].lastEventId)
  t.equal(replay.events?.length, 6)
  t.ok(replay.events?.every(event => event.data.endsWith(':-') ? event.tags === undefined : event.tags?.team === event.data.split(':')[1]), 'tags as published')
})

t.test('presence across instances: listed and counted, one entry per id, a stream that ends leaves at once', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, SHARED_REDIS, prefix, { announce: true })
  const b = await instance(t, SHARED_REDIS, prefix, { announce: true })
  const watcher = await live(t, b, { topics: ['doc'] })
  const annA = await live(t, a, { topics: ['doc', 'chat'], presence: { id: 'ann', info: { name: 'Ann' } } })
  await live(t, b, { topics: ['doc'], presence: { id: 'ann', info: { name: 'Ann' } } })
  await live(t, b, { topics: ['doc'], presence: { id: 'bob' } })
  await live(t, a, { topics: ['doc'], presence: 'count' })
  const expected = { count: 4, members: [{ id: 'ann', info: { name: 'Ann' }, streams: 2 }, { id: 'bob', streams: 1 }] }
  const sorted = (presence: Awaited<ReturnType<FastifyInstance['eventHub']['presence']>>): typeof presence =>
    ({ ...presence, members: [...presence.members].sort((x, y) => x.id.localeCompare(y.id)) })
  await until(async () => (await a.app.eventHub.presenceCount('doc')) === 4, 'four on doc')
  t.same(sorted(await a.app.eventHub.presence('doc')), expected, 'from A')
  t.same(sorted(await b.app.eventHub.presence('doc')), expected, 'from B')
  t.same(await b.app.eventHub.presence('chat'), { count: 1, members: [{ id: 'ann', info: { name: 'Ann' }, streams: 1 }] })
  annA.close()
  const started = Date.now()
  await until(async () => (await b.app.eventHub.presenceCount('doc')) === 3, 'ann\'s first tab gone')
  t.ok(Date.now() - started < 1000, `left within ${Date.now() - started} ms`)
  t.same(await b.app.eventHub.presence('chat'), { count: 0, members: [] })
  await watcher.received(4)
  t.same(watcher.events.map(event => `${event.type} ${JSON.parse(event.data).id as string}`), ['join ann', 'join ann', 'join bob', 'leave ann'])
  // A closing instance takes its entries with it.
  await a.app.close()
  t.same(sorted(await b.app.eventHub.presence('doc')), { count: 2, members: [{ id: 'ann', info: { name: 'Ann' }, streams: 1 }, { id: 'bob', streams: 1 }] })
})

t.test('an instance killed with SIGKILL drops out of presence within the TTL; the others stay', async t => {
  const prefix = uniquePrefix(t)
  const ttl = 1500
  const child = spawn(process.execPath, ['dist/bench/hub-instance.js', SHARED_REDIS, prefix, String(ttl)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(createInterface({ input: child.stdout }), 'line') as [string]
  const childUrl = `http://127.0.0.1:${line.split(' ')[1]}`
  const here = await instance(t, SHARED_REDIS, prefix, { ttl })
  for (let i = 0; i < 20; i++) await live(t, childUrl, { topics: ['room'], presence: i % 2 === 0 ? { id: `c${i}` } : 'count' })
  await live(t, here, { topics: ['room'], presence: { id: 'stays' } })
  await until(async () => (await here.app.eventHub.presenceCount('room')) === 21, 'all 21 in')
  // Alive past several TTLs: the renewals keep it.
  await sleep(ttl * 2)
  t.equal((await here.app.eventHub.presence('room')).members.length, 11, 'renewed: still there after two TTLs')
  child.kill('SIGKILL')
  const killed = Date.now()
  await until(async () => (await here.app.eventHub.presenceCount('room')) === 1, 'the killed instance gone', ttl * 3)
  const gone = Date.now() - killed
  t.ok(gone <= ttl + 200, `gone ${gone} ms after the kill (TTL ${ttl} ms)`)
  t.same(await here.app.eventHub.presence('room'), { count: 1, members: [{ id: 'stays', streams: 1 }] })
  const keys = await sharedClient(t).hkeys(`${prefix}:p:room`)
  t.equal(keys.length, 1, 'the dead instance\'s fields were deleted by the read')
})

t.test('Redis restarts empty: reconnecting clients are back in presence, one that left during the outage is not', async t => {
  const server = await redisServer(t)
  const prefix = '{presence}'
  const ttl = 900
  const a = await instance(t, server.url, prefix, { ttl })
  const b = await instance(t, server.url, prefix, { ttl })
  // Real EventSource clients: they reconnect by themselves when the hub closes their streams (the store was reset).
  const sources = [
    new EventSource(url(a, { topics: ['room'], presence: { id: 'ann' } })),
    new EventSource(url(b, { topics: ['room'], presence: { id: 'bob' } })),
    new EventSource(url(b, { topics: ['room', 'side'], presence: 'count' }))
  ]
  t.teardown(() => { for (const source of sources) source.close() })
  await until(async () => (await a.app.eventHub.presenceCount('room')) === 3, 'three in')
  await server.kill()
  // Bob leaves while Redis is away: his instance cannot write it now.
  sources[1].close()
  await sleep(200)
  await server.start()
  const back = Date.now()
  await until(async () => {
    const presence = await a.app.eventHub.presence('room').catch(() => undefined)
    return presence?.count === 2 && presence.members.length === 1
  }, 'ann and the counted stream back, bob not', 10_000)
  t.pass(`back ${Date.now() - back} ms after the restart`)
  // The clients may still be settling (a second reconnect after the store reset): what holds once they settled.
  await until(async () => {
    const presence = await a.app.eventHub.presence('room').catch(() => undefined)
    return presence?.count === 2 && presence.members.length === 1 && presence.members[0].id === 'ann' &&
      (await b.app.eventHub.presenceCount('side').catch(() => 0)) === 1
  }, 'ann and the counted stream on room, the counted stream on side, bob nowhere', 10_000)
  t.pass('bob, who left during the outage, is not back')
})

t.test('presence keys lost under open streams (evicted, a replica behind): the next renewal writes them again', async t => {
  const prefix = uniquePrefix(t)
  const ttl = 900
  const a = await instance(t, SHARED_REDIS, prefix, { ttl })
  await live(t, a, { topics: ['room'], presence: { id: 'ann', info: { n: 1 } } })
  await live(t, a, { topics: ['room'], presence: 'count' })
  await until(async () => (await a.app.eventHub.presenceCount('room')) === 2, 'two in')
  const redis = sharedClient(t)
  await redis.del(`${prefix}:p:room`, `${prefix}:pn:room`, `${prefix}:pt:room`)
  t.same(await a.app.eventHub.presence('room'), { count: 0, members: [] }, 'gone from Redis')
  const lost = Date.now()
  await until(async () => (await a.app.eventHub.presenceCount('room')) === 2, 'written again', ttl * 2)
  t.ok(Date.now() - lost <= ttl / 3 + 300, `back within a renewal (${Date.now() - lost} ms)`)
  t.same(await a.app.eventHub.presence('room'), { count: 2, members: [{ id: 'ann', info: { n: 1 }, streams: 1 }] })
})

t.test('a write that replaces an instance\'s entries drops its others; a restart\'s renewal finds a lost topic', async t => {
  const prefix = uniquePrefix(t)
  const store = new RedisStore({ connection: SHARED_REDIS, prefix })
  t.teardown(() => store.close())
  const presence = store.presence(30_000)
  await presence.update([{ topic: 'room', count: 2, joined: [['k1', '{"id":"x"}'], ['k2', '{"id":"y"}']], left: [] }])
  const other = store.presence(30_000)
  await other.update([{ topic: 'room', count: 1, joined: [['k1', '{"id":"z"}']], left: [] }])
  t.equal((await presence.read('room', true)).members.length, 3)
  await presence.update([{ topic: 'room', count: 1, joined: [['k2', '{"id":"y"}']], left: [], replace: true }])
  t.same((await presence.read('room', true)).members.sort(), ['{"id":"y"}', '{"id":"z"}'], 'its k1 gone, the other instance\'s k1 kept')
  t.same(await presence.read('room', false), { count: 2, members: [] })
  const redis = sharedClient(t)
  await redis.del(`${prefix}:pn:room`)
  const rewritten: string[] = []
  await presence.refresh(new Map([['room', 1], ['none', 1]]), topic => {
    rewritten.push(topic)
    return { topic, count: 1, joined: [], left: [], replace: true }
  })
  t.same(rewritten, ['room', 'none'], 'the topics whose count field was missing are written again')
  t.equal((await presence.read('room', false)).count, 1)
  await presence.update([{ topic: 'room', count: 0, joined: [], left: ['k2'] }])
  t.same(await presence.read('room', true), { count: 0, members: ['{"id":"z"}'] }, 'count 0 takes the instance out, its fields too')
  await presence.close()
})

t.test('tags Redis cannot give back as an object (a foreign publish, a corrupt entry): no filter lets the event through, nothing crashes', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, SHARED_REDIS, prefix)
  const filtered = await live(t, a, { topics: ['feed'], filter: { not: { tag: 'private', eq: 'yes' } } })
  const all = await live(t, a, { topics: ['feed'] })
  const first = await a.app.eventHub.publish('feed', 'clean')
  await all.received(1)
  await filtered.received(1)
  // A message on the topic's channel as another publisher might send it, its tags line not JSON of an object.
  const redis = sharedClient(t)
  const epoch = await redis.hget(`${prefix}:meta`, 'first') as string
  await redis.publish(`${prefix}:c:feed`, `${Number(first) + 1}\n${first}\n${epoch}\n${Date.now()}\n\n\nnot json\nforeign`)
  await redis.publish(`${prefix}:c:feed`, `${Number(first) + 2}\n${Number(first) + 1}\n${epoch}\n${Date.now()}\n\n\n["a"]\nforeign 2`)
  await all.received(3)
  t.same(texts(all.events), ['clean', 'foreign', 'foreign 2'], 'a subscriber without a filter gets them')
  // The store's head moves past the foreign positions, as the other publisher's script would have moved it.
  await redis.hset(`${prefix}:meta`, 'head', String(Number(first) + 2))
  await a.app.eventHub.publish('feed', 'after')
  await all.received(4)
  await filtered.received(2)
  t.same(texts(filtered.events), ['clean', 'after'], 'a filter, even one of `not`, lets none through')
  // A stream entry whose tags field is corrupt: the replay leaves it out for filtered readers too.
  await redis.xadd(`${prefix}:t:feed`, `${Number(first) + 4}-0`, 'm', `${Date.now()}:${Number(first) + 3}`, 'd', 'stored foreign', 'g', '{oops')
  const replay = await a.store.readAfter(['feed'], first)
  const corrupt = replay.events?.find(event => event.data === 'stored foreign')
  t.ok(corrupt !== undefined && corrupt.tags !== undefined && Object.keys(corrupt.tags).length === 0, 'read back as unreadable tags')
  t.equal(compileFilter({ not: { tag: 'x', eq: 'y' } }).test(corrupt?.tags), false)
  // An empty event type given to the store itself is no event type, tags or not.
  const appended = await a.store.append('other', { data: 'x', event: '', tags: { team: 'a' } })
  t.same([appended.event, appended.tags], [undefined, { team: 'a' }])
  t.notOk('event' in appended)
})
