import fc from 'fast-check'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  EventStream, EventStreamParser, FST_SSE_INVALID_FILTER, FST_SSE_INVALID_TAGS, MemoryStore, injectEventStream, type FastifyEventStreamOptions, type InjectedEventStream,
  type ParsedEvent, type TagFilter, type Tags
} from '../index.js'
import { checkTags, compileFilter, MAX_FILTER_DEPTH, MAX_FILTER_SIZE, MAX_TAGS, UNREADABLE_TAGS } from '../lib/filter.js'
import { Audience } from '../lib/hub-writer.js'
import { kHeartbeat } from '../lib/stream.js'
import { build, get, listen, until } from './helpers.js'

/** What a filter means, written plainly: the compiled one must agree with it on every input. */
function reference (filter: TagFilter, tags: Tags): boolean {
  if ('and' in filter) return filter.and.every(f => reference(f, tags))
  if ('or' in filter) return filter.or.some(f => reference(f, tags))
  if ('not' in filter) return !reference(filter.not, tags)
  const value = Object.hasOwn(tags, filter.tag) ? tags[filter.tag] : undefined
  if ('eq' in filter) return value === filter.eq
  return value !== undefined && filter.in.includes(value)
}

const names = fc.constantFrom('team', 'level', 'region', '__proto__', 'constructor')
const values = fc.constantFrom('a', 'b', 'c', 'admin', '')
const filters: fc.Arbitrary<TagFilter> = fc.letrec<{ filter: TagFilter }>(tie => ({
  filter: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    fc.record({ tag: names, eq: values }),
    fc.record({ tag: names, in: fc.array(values, { maxLength: 12 }) }),
    fc.record({ and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ not: tie('filter') }))
})).filter
const tagSets = fc.dictionary(names, values, { maxKeys: 4 }).map(tags => JSON.parse(JSON.stringify(tags)) as Tags)

t.test('a compiled filter agrees with its plain meaning on any tags', async t => {
  fc.assert(fc.property(filters, fc.array(tagSets, { maxLength: 6 }), (filter, tagsList) => {
    let compiled
    try {
      compiled = compileFilter(filter)
    } catch (err) {
      // Random nesting can pass the bounds: refused with the coded error, never anything else.
      return err instanceof FST_SSE_INVALID_FILTER
    }
    for (const tags of tagsList) if (compiled.test(tags) !== reference(filter, tags)) return false
    return compiled.test(undefined) === reference(filter, {})
  }), { numRuns: 2000 })
  t.pass('2000 random filters')
})

t.test('equal filters share a key (the writer joins their frames once); different ones do not', async t => {
  t.equal(compileFilter({ tag: 'team', in: ['b', 'a', 'a'] }).key, compileFilter({ tag: 'team', in: ['a', 'b'] }).key)
  t.not(compileFilter({ tag: 'team', eq: 'a' }).key, compileFilter({ tag: 'team', eq: 'b' }).key)
  t.not(compileFilter({ and: [{ tag: 'a', eq: 'b' }] }).key, compileFilter({ or: [{ tag: 'a', eq: 'b' }] }).key)
  t.not(compileFilter({ tag: 'a', eq: 'b' }).key, compileFilter({ not: { tag: 'a', eq: 'b' } }).key)
  // A tag inherited from Object.prototype is not a tag of the event.
  t.equal(compileFilter({ tag: 'toString', in: ['x'] }).test({}), false)
  t.equal(compileFilter({ tag: 'team', in: 'abcdefghij'.split('') }).test({ team: 'j' }), true, 'a long list goes through a set')
  t.equal(compileFilter({ not: { tag: 'private', eq: 'yes' } }).test(UNREADABLE_TAGS), false, 'tags a store could not read pass no filter')
})

t.test('bad filters and bad tags: coded errors naming the mistake', async t => {
  const deep = (levels: number): TagFilter => levels === 1 ? { tag: 'a', eq: 'b' } : { not: deep(levels - 1) }
  const bad: Array<[unknown, RegExp]> = [
    [null, /filter is null, expected an object/],
    [[{ tag: 'a', eq: 'b' }], /filter is an array/],
    [{ tag: 'a', like: 'b' }, /has the keys \["tag","like"\]/],
    [{ tag: 'a', eq: 1 }, /filter\.eq is number 1, expected a string/],
    [{ tag: '', eq: 'b' }, /filter\.tag is an empty string/],
    [{ tag: 'a', in: 'b' }, /filter\.in is the string "b", expected an array of strings/],
    [{ tag: 'a', in: ['b', 2] }, /filter\.in holds number 2/],
    [{ and: [] }, /filter\.and is an array, expected a non-empty array of filters/],
    [{ or: [{ tag: 'a', eq: 'b' }, { nope: 1 }] }, /filter\.or\[1\] has the keys \["nope"\]/],
    [{ tag: 'a', eq: 'b', extra: 1 }, /has the keys/],
    [deep(MAX_FILTER_DEPTH + 1), new RegExp(`nested deeper than ${MAX_FILTER_DEPTH} levels`)],
    [{ tag: 'a', in: Array.from({ length: MAX_FILTER_SIZE }, (_, i) => String(i)) }, new RegExp(`more than ${MAX_FILTER_SIZE} operators and values`)],
    [{ or: Array.from({ length: MAX_FILTER_SIZE + 1 }, () => ({ tag: 'a', eq: 'b' })) }, /more than 256/],
    [Object.create({ tag: 'a', eq: 'b' }), /expected an object/]
  ]
  for (const [filter, message] of bad) t.throws(() => compileFilter(filter), { code: 'FST_SSE_INVALID_FILTER', message }, String(message))
  t.ok(compileFilter(deep(MAX_FILTER_DEPTH)), 'exactly the depth bound is fine')

  const hub = await hubApp(t)
  const tooMany = Object.fromEntries(Array.from({ length: MAX_TAGS + 1 }, (_, i) => [`t${i}`, 'x']))
  const badTags: Array<[unknown, RegExp]> = [
    ['team', /expected an object of string values, got the string "team"/],
    [['a'], /got an array/],
    [{ team: 1 }, /tag "team" is number 1, expected a string/],
    [{ team: null }, /tag "team" is null/],
    [{ ['x'.repeat(65)]: 'a' }, /a tag name is the string/],
    [{ team: 'x'.repeat(257) }, /longer than 256 characters/],
    [tooMany, /33 tags, at most 32/]
  ]
  for (const [tags, message] of badTags) {
    t.throws(() => hub.app.eventHub.publish('a', 'x', { tags: tags as Tags }), { code: 'FST_SSE_INVALID_TAGS', message }, String(message))
  }
  t.throws(() => hub.app.eventHub.send('a', 'x', {}, { tags: { team: 2 } as never }), FST_SSE_INVALID_TAGS)
  // Nothing was kept: a reader from the start of the history finds only what comes next.
  const reader = await subscribe(hub, { topics: ['a'] })
  const first = await hub.app.eventHub.publish('a', 'kept', { tags: {} })
  await hub.app.eventHub.publish('a', 'kept too', { tags: { team: undefined, level: 'x' } })
  await reader.received(2)
  t.same(reader.events.map(event => event.data), ['kept', 'kept too'])
  t.equal(reader.events[0].lastEventId, first)
  t.equal(hub.app.eventHub.stats().published, 2, 'the refused publishes counted nothing')
  t.same(checkTags({ team: undefined, level: 'x' }), { level: 'x' }, 'a tag whose value is undefined is left out')
  t.equal(checkTags({ team: undefined }), undefined)
  // A bad filter is refused by subscribe() before the stream joins anything.
  const refused = await drain(await injectEventStream(hub.app, { url: `/events?q=${encodeURIComponent(JSON.stringify({ topics: ['a'], filter: { tag: 'a', eq: 5 } }))}` }))
  t.same(refused.map(event => event.data), ['FST_SSE_INVALID_FILTER'])
  t.same(hub.app.eventHub.stats().subscribers, { a: 1 }, 'the refused stream joined no topic')
})

interface Query { topics: string[], filter?: TagFilter, from?: string }

interface HubApp { app: FastifyInstance, streams: EventStream[], subscribed: Array<Promise<boolean>> }

async function hubApp (t: Test, options: FastifyEventStreamOptions = {}): Promise<HubApp> {
  const app = await build(t, { heartbeat: false, ...options })
  const streams: EventStream[] = []
  const subscribed: Array<Promise<boolean>> = []
  app.get<{ Querystring: { q: string } }>('/events', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    const { topics, filter, from } = JSON.parse(request.query.q) as Query
    try {
      subscribed.push(app.eventHub.subscribe(stream, topics, { filter, lastEventId: from }))
    } catch (err) {
      stream.message((err as Error & { code: string }).code)
      stream.close()
    }
  })
  return { app, streams, subscribed }
}

interface Reader {
  response: InjectedEventStream
  events: ParsedEvent[]
  received: (count: number) => Promise<void>
}

async function subscribe ({ app, subscribed }: HubApp, query: Query, headers: Record<string, string> = {}): Promise<Reader> {
  const response = await injectEventStream(app, { url: `/events?q=${encodeURIComponent(JSON.stringify(query))}`, headers })
  const events: ParsedEvent[] = []
  ;(async () => { for await (const event of response) events.push(event) })().catch(() => {})
  if (!(await subscribed[subscribed.length - 1])) throw new Error('the subscription did not go live')
  return { response, events, received: count => until(() => events.length >= count, `${count} events (have ${events.length})`) }
}

async function drain (response: InjectedEventStream): Promise<ParsedEvent[]> {
  const events = []
  for await (const event of response) events.push(event)
  return events
}

/** Records the frames each stream is handed (by the hub's writer or anything else) until the test ends. */
function captureWrites (t: Test): Map<EventStream, Uint8Array[]> {
  const writes = new Map<EventStream, Uint8Array[]>()
  const write = EventStream.prototype.write
  EventStream.prototype.write = function (frame) {
    writes.set(this, [...(writes.get(this) ?? []), frame])
    return write.call(this, frame)
  }
  t.teardown(() => { EventStream.prototype.write = write })
  return writes
}

/** Publishes one event per team, round-robin: team a, b, c, a, b, c, ... and one untagged event every fourth. */
async function publishMix (app: FastifyInstance, count: number, topic = 'feed', start = 0): Promise<string[]> {
  const ids = []
  for (let i = start; i < start + count; i++) {
    const team = ['a', 'b', 'c'][i % 3]
    ids.push(await app.eventHub.publish(topic, `${i}:${i % 4 === 3 ? '-' : team}`, i % 4 === 3 ? {} : { tags: { team } }))
  }
  return ids
}

const teamOf = (event: ParsedEvent): string => event.data.split(':')[1]

t.test('live: a filtered subscriber gets only what its filter lets through; others get everything', async t => {
  const hub = await hubApp(t)
  const all = await subscribe(hub, { topics: ['feed'] })
  const teamA = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })
  const notB = await subscribe(hub, { topics: ['feed'], filter: { not: { tag: 'team', eq: 'b' } } })
  const aOrC = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', in: ['a', 'c'] } })
  // One at a time (one event per tick), then a burst in one tick (the joined path).
  await publishMix(hub.app, 12)
  await Promise.all(Array.from({ length: 12 }, (_, i) => hub.app.eventHub.publish('feed', `${12 + i}:${['a', 'b', 'c'][i % 3]}`, { tags: { team: ['a', 'b', 'c'][i % 3] } })))
  await all.received(24)
  await until(() => teamA.events.length >= 7, 'team a')
  t.same(teamA.events.map(teamOf), Array(7).fill('a'))
  await until(() => notB.events.length >= 24 - 7, 'not b')
  t.notOk(notB.events.some(event => teamOf(event) === 'b'), 'not b: untagged events pass, b never')
  t.ok(notB.events.some(event => teamOf(event) === '-'))
  await until(() => aOrC.events.length >= 14, 'a or c')
  t.same(new Set(aOrC.events.map(teamOf)), new Set(['a', 'c']))
  // The filtered ones are in the same order, and are the unfiltered one's events that pass.
  const expected = all.events.filter(event => teamOf(event) === 'a').map(event => event.lastEventId)
  t.same(teamA.events.map(event => event.lastEventId), expected)
  await hub.app.eventHub.publish('feed', 'last')
  await all.received(25)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(teamA.events.length, 7, 'nothing more came to team a')
})

t.test('replay: after Last-Event-ID a filtered subscriber gets only what passes, and resumes right after skipping', async t => {
  const hub = await hubApp(t)
  const first = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'b' } })
  await publishMix(hub.app, 6)
  await first.received(2)
  await first.response.close()
  // Published while it was away: its replay holds b's only.
  await publishMix(hub.app, 12, 'feed', 6)
  const again = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'b' }, from: first.events[first.events.length - 1].lastEventId })
  await again.received(3)
  await publishMix(hub.app, 6, 'feed', 18)
  await again.received(4)
  const seen = [...first.events, ...again.events].map(event => event.data)
  t.same(seen.map(d => d.split(':')[1]), Array(seen.length).fill('b'))
  const expected = Array.from({ length: 24 }, (_, i) => i).filter(i => i % 3 === 1 && i % 4 !== 3).map(i => `${i}:b`)
  t.same(seen, expected, 'every b event exactly once, in order, nothing else')
})

t.test('tags travel with an event of any shape, and an event type does not change what a filter sees', async t => {
  const hub = await hubApp(t)
  const reader = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })
  await hub.app.eventHub.publish('feed', 'typed', { event: 'note', tags: { team: 'a' } })
  await hub.app.eventHub.send('feed', 'order', { n: 1 }, { tags: { team: 'a' } })
  await hub.app.eventHub.publish('feed', 'typed b', { event: 'note', tags: { team: 'b' } })
  await hub.app.eventHub.publish('feed', 'plain', { tags: { team: 'a' } })
  await reader.received(3)
  t.same(reader.events.map(event => [event.type, event.data]), [['note', 'typed'], ['order', '{"n":1}'], ['message', 'plain']])
  const store = new MemoryStore()
  const kept = await store.append('t', { data: 'x', event: 'e', tags: { team: 'a' } })
  t.same(kept.tags, { team: 'a' })
  t.same((await store.readAfter(['t'], String(kept.seq - 1))).events?.[0], kept)
})

t.test('resync: an id the history cannot place gives the resync frame, then only what passes', async t => {
  const hub = await hubApp(t, { hub: { historySize: 3 } })
  const ids = await publishMix(hub.app, 12)
  const reader = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'c' }, from: ids[0] })
  await reader.received(1)
  t.equal(reader.events[0].type, 'resync', 'the id is older than the history: resync, not a replay')
  await publishMix(hub.app, 6, 'feed', 12)
  await reader.received(3)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.same(reader.events.slice(1).map(event => event.data), ['14:c', '17:c'], '12 is a, 13 b, 14 c, 15 untagged, 16 a, 17 c')
})

/**
 * A filtered subscriber (team a) resuming after the first of six events, whose replay is held while `during` publishes;
 * then one more event of team a, live. Resolves with what it got.
 */
async function heldReplay (t: Test, during: (app: FastifyInstance) => Promise<void>): Promise<string[]> {
  const store = new MemoryStore()
  let hold: (() => void) | undefined
  const held = {
    append: store.append.bind(store),
    listen: store.listen.bind(store),
    close: store.close.bind(store),
    async readAfter (topics: readonly string[], lastEventId: string | undefined) {
      const replay = await store.readAfter(topics, lastEventId)
      if (lastEventId !== undefined) await new Promise<void>(resolve => { hold = resolve })
      return replay
    }
  }
  const hub = await hubApp(t, { hub: { store: held } })
  const ids = await publishMix(hub.app, 6)
  const response = injectEventStream(hub.app, { url: `/events?q=${encodeURIComponent(JSON.stringify({ topics: ['feed'], filter: { tag: 'team', eq: 'a' }, from: ids[0] }))}` })
  await until(() => hold !== undefined, 'the replay read')
  await during(hub.app)
  ;(hold as () => void)()
  const reader = await response
  const events: ParsedEvent[] = []
  ;(async () => { for await (const event of reader) events.push(event) })().catch(() => {})
  if (!(await hub.subscribed[0])) throw new Error('the subscription did not go live')
  await hub.app.eventHub.publish('feed', 'x:a', { tags: { team: 'a' } })
  await until(() => events.some(event => event.data === 'x:a'), 'live')
  return events.map(event => event.data)
}

t.test('live events that arrive while a filtered replay is written wait, and are filtered too', async t => {
  const got = await heldReplay(t, async app => {
    await publishMix(app, 6, 'feed', 6)
    // One in a tick of its own: the writer's single-event path meets the waiting subscriber too.
    await new Promise(resolve => setImmediate(resolve))
    await app.eventHub.publish('feed', '12:a', { tags: { team: 'a' } })
    await new Promise(resolve => setImmediate(resolve))
    await app.eventHub.publish('feed', '13:b', { tags: { team: 'b' } })
  })
  t.same(got, ['6:a', '9:a', '12:a', 'x:a'], 'replayed (none after 0 but 3, untagged), pending 6, 9 and 12, live')
})

t.test('a tick whose events a waiting subscriber\'s filter rejects, all of them, leaves it nothing to wait for', async t => {
  const got = await heldReplay(t, async app => {
    await Promise.all(['y1', 'y2'].map(data => app.eventHub.publish('feed', data, { tags: { team: 'b' } })))
  })
  t.same(got, ['x:a'], 'it went live, then got the next event of its team')
})

t.test('a write to a filtered subscriber while the tick holds events releases only what passes, in order', async t => {
  const hub = await hubApp(t)
  const reader = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })
  const stream = hub.streams[0]
  // Not awaited: both wait in the tick when the direct write comes, which has the writer release them first.
  const published = [hub.app.eventHub.publish('feed', '0:a', { tags: { team: 'a' } }), hub.app.eventHub.publish('feed', '1:b', { tags: { team: 'b' } })]
  await Promise.resolve()
  stream.message('direct')
  await Promise.all(published)
  await hub.app.eventHub.publish('feed', '2:a', { tags: { team: 'a' } })
  await reader.received(3)
  t.same(reader.events.map(event => event.data), ['0:a', 'direct', '2:a'])
})

t.test('encode once: filtered subscribers get the very bytes everyone gets, joined once per filter in a batch', async t => {
  const hub = await hubApp(t)
  const readers = [
    await subscribe(hub, { topics: ['feed'] }),
    await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } }),
    await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', in: ['a'] } }),
    await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } }),
    await subscribe(hub, { topics: ['feed', 'other'], filter: { tag: 'team', eq: 'a' } })
  ]
  const writes = captureWrites(t)
  // One event: the same frame object for every receiver.
  await hub.app.eventHub.publish('feed', 'one', { tags: { team: 'a' } })
  for (const reader of readers) await reader.received(1)
  const one = hub.streams.map(stream => writes.get(stream)?.[0])
  t.ok(one.every(frame => frame !== undefined && frame === one[0]), 'one frame for all five')
  writes.clear()
  // A burst of one tick: the unfiltered subscriber's joined frame differs from the filtered ones', which share theirs.
  await Promise.all(['a', 'b', 'a', 'c'].map((team, i) => hub.app.eventHub.publish('feed', `burst ${i}`, { tags: { team } })))
  for (const reader of readers) await reader.received(3)
  const [all, a1, a2, a3, a4] = hub.streams.map(stream => writes.get(stream) ?? [])
  t.equal(all.length, 1, 'one write for the whole burst')
  t.equal(a1.length, 1)
  t.equal(a1[0], a3[0], 'equal filters: the same joined frame')
  t.same(Buffer.from(a2[0]), Buffer.from(a1[0]), 'another filter letting the same events through: the same bytes, joined apart')
  t.equal(a1[0], a4[0], 'a subscriber of a second topic with no events in the tick shares the topic\'s frames')
  t.same(readers[1].events.map(event => event.data), ['one', 'burst 0', 'burst 2'])
  await readers[0].received(5)
})

/** A real client on a socket: its events and the Last-Event-ID it would reconnect with, as EventSource keeps it. */
async function socketClient (t: Test, base: string, query: Query): Promise<{ events: ParsedEvent[], lastEventId: () => string, close: () => void }> {
  const response = await get(`${base}/events?q=${encodeURIComponent(JSON.stringify(query))}`)
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser(event => events.push(event))
  response.setEncoding('utf8')
  response.on('data', (chunk: string) => parser.feed(chunk))
  t.teardown(() => response.destroy())
  return { events, lastEventId: () => parser.lastEventId, close: () => response.destroy() }
}

t.test('a subscriber whose filter skips events gets its position at the heartbeat, and resumes from it after the history moved on', async t => {
  const hub = await hubApp(t, { heartbeat: 30, hub: { historySize: 5 } })
  const base = await listen(hub.app)
  const reader = await socketClient(t, base, { topics: ['feed'], filter: { tag: 'team', eq: 'rare' } })
  await until(() => reader.lastEventId() !== '', 'the first position frame')
  await hub.app.eventHub.publish('feed', 'mine', { tags: { team: 'rare' } })
  await until(() => reader.events.length === 1, 'mine')
  const mine = reader.lastEventId()
  const ids: string[] = []
  for (let i = 0; i < 20; i++) ids.push(await hub.app.eventHub.publish('feed', `other ${i}`, { tags: { team: 'common' } }))
  await until(() => reader.lastEventId() === ids[19], 'the position frame')
  t.same(reader.events.map(event => event.data), ['mine'], 'the position frame dispatched nothing')
  // Twenty events later the history (5) no longer holds what came after "mine": resuming from it would resync.
  reader.close()
  await hub.app.eventHub.publish('feed', 'mine again', { tags: { team: 'rare' } })
  const again = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'rare' }, from: ids[19] })
  await again.received(1)
  t.same(again.events.map(event => [event.type, event.data]), [['message', 'mine again']], 'replayed, no resync')
  const fromOld = await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'rare' }, from: mine })
  await fromOld.received(1)
  t.equal(fromOld.events[0].type, 'resync', 'the id of its last event would have resynced')
  // A subscriber of a quiet topic as well: its position moves up to the quiet topic's newest event (or the head it
  // subscribed at), not past events the quiet topic might still deliver.
  const both = await socketClient(t, base, { topics: ['feed', 'quiet'], filter: { tag: 'team', eq: 'rare' } })
  await until(() => both.lastEventId() !== '', 'its first position frame')
  const subscribedAt = both.lastEventId()
  const later: string[] = []
  for (let i = 0; i < 3; i++) later.push(await hub.app.eventHub.publish('feed', `skipped ${i}`, { tags: { team: 'common' } }))
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(both.lastEventId(), subscribedAt, 'quiet since it subscribed: nothing to tell past the head it got')
  await hub.app.eventHub.publish('quiet', 'q', { tags: { team: 'common' } })
  await until(() => both.lastEventId() === later[2], 'the quiet topic\'s event moved it on, up to the other topic\'s newest')
  t.same(both.events, [], 'and it dispatched nothing')
  // An unfiltered subscriber gets the comment as before: its id stays the one of its last event.
  const plain = await socketClient(t, base, { topics: ['feed'] })
  await until(() => plain.lastEventId() !== '', 'its position frame')
  const before = plain.lastEventId()
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(plain.lastEventId(), before)
})

t.test('the heartbeat\'s position covers what the tick holds for the subscriber, and goes once per position', async t => {
  const hub = await hubApp(t)
  await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })
  const stream = hub.streams[0]
  const frames: string[] = []
  const write = EventStream.prototype.write
  EventStream.prototype.write = function (frame) { frames.push(Buffer.from(frame).toString()); return write.call(this, frame) }
  t.teardown(() => { EventStream.prototype.write = write })
  stream[kHeartbeat]()
  t.same(frames, [], 'active since the last heartbeat (its position frame): nothing')
  const skipped = await hub.app.eventHub.publish('feed', 'b1', { tags: { team: 'b' } })
  await new Promise(resolve => setImmediate(resolve))
  stream[kHeartbeat]()
  t.same(frames, [`id: ${skipped}\n\n`], 'idle, past a skipped event: its position')
  stream[kHeartbeat]()
  t.same(frames.slice(1), [': \n\n'], 'the same position again: the comment')
  frames.length = 0
  // Held in the tick when the heartbeat comes: a skipped event, then one that passes.
  const held = [hub.app.eventHub.publish('feed', 'b2', { tags: { team: 'b' } }), hub.app.eventHub.publish('feed', 'a1', { tags: { team: 'a' } })]
  await Promise.resolve()
  stream[kHeartbeat]()
  const [, a1] = await Promise.all(held)
  t.match(frames[0], new RegExp(`^id: ${a1}\ndata: a1\n\n$`), 'the held event first')
  t.equal(frames[1], ': \n\n', 'then nothing more to tell: a1 is the newest position')
  t.equal(frames.length, 2)
})

t.test('filters that let the same events of a tick through share one joined frame; different ones never mix', async t => {
  const hub = await hubApp(t)
  // Two users' filters, different keys, the same result; and two whose results collide in the writer's hash.
  const queries: TagFilter[] = [
    { and: [{ tag: 'team', eq: 'a' }, { not: { tag: 'user', eq: 'u1' } }] },
    { and: [{ tag: 'team', eq: 'a' }, { not: { tag: 'user', eq: 'u2' } }] },
    { tag: 'n', in: ['0', '1'] },
    { tag: 'n', eq: '32' },
    { tag: 'n', in: ['0', '33'] },
    { tag: 'n', in: ['1', '2'] }
  ]
  const readers = []
  for (const filter of queries) readers.push(await subscribe(hub, { topics: ['feed'], filter }))
  const writes = captureWrites(t)
  await Promise.all(Array.from({ length: 40 }, (_, n) => hub.app.eventHub.publish('feed', `e${n}`, { tags: { n: String(n), team: n % 2 === 0 ? 'a' : 'b' } })))
  await readers[0].received(20)
  await readers[2].received(2)
  await readers[3].received(1)
  const [first, second] = hub.streams.map(stream => writes.get(stream) ?? [])
  t.equal(first.length, 1)
  t.equal(first[0], second[0], 'one joined frame for both users')
  t.same(readers[2].events.map(event => event.data), ['e0', 'e1'])
  t.same(readers[3].events.map(event => event.data), ['e32'])
  await readers[4].received(2)
  await readers[5].received(2)
  t.same(readers[4].events.map(event => event.data), ['e0', 'e33'])
  t.same(readers[5].events.map(event => event.data), ['e1', 'e2'])
  // A subscriber that is not in a topic's audience is not taken out of it.
  const audience = new Audience()
  t.equal(audience.delete({ filter: null } as never), false)
})

t.test('a filter that lets a whole tick through shares the joined frame of the unfiltered subscribers', async t => {
  const hub = await hubApp(t)
  const readers = [await subscribe(hub, { topics: ['feed'] }), await subscribe(hub, { topics: ['feed'], filter: { tag: 'team', eq: 'a' } })]
  const writes = captureWrites(t)
  await Promise.all(['a1', 'a2', 'a3'].map(data => hub.app.eventHub.publish('feed', data, { tags: { team: 'a' } })))
  for (const reader of readers) await reader.received(3)
  const [all, filtered] = hub.streams.map(stream => writes.get(stream) ?? [])
  t.equal(all.length, 1, 'the tick in one write')
  t.equal(filtered[0], all[0], 'the very same Buffer')
  t.same(readers[1].events.map(event => event.data), ['a1', 'a2', 'a3'])
})
