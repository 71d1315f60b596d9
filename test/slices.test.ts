// A fan-out to more subscribers than a slice (SLICE) is written a slice per turn of the event loop, so that the loop
// serves connections and requests between slices; order, exactly-once and the release of a subscriber's share
// before anything else written to it hold as for a flush in one go.
import diagnostics from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { CHANNELS, injectEventStream, MemoryStore, type EventStore, type EventStream, type InjectedEventStream, type ParsedEvent } from '../index.js'
import { SLICE } from '../lib/hub-writer.js'
import { build, tick } from './helpers.js'

const COUNT = 2 * SLICE + 37

interface Subscribers { app: Awaited<ReturnType<typeof build>>, streams: EventStream[], clients: InjectedEventStream[] }

/** COUNT streams subscribed to `topics` (each client's query), all live. */
async function subscribed (t: Test, topicsOf: (i: number) => string, count = COUNT, store?: EventStore): Promise<Subscribers> {
  const app = await build(t, { heartbeat: false, hub: store === undefined ? {} : { store } })
  const streams: EventStream[] = []
  const live: Array<Promise<boolean>> = []
  app.get<{ Querystring: { topics: string } }>('/events', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    live.push(app.eventHub.subscribe(stream, request.query.topics.split(',')))
  })
  const clients: InjectedEventStream[] = []
  for (let i = 0; i < count; i++) clients.push(await injectEventStream(app, `/events?topics=${topicsOf(i)}`))
  t.same(new Set(await Promise.all(live)), new Set([true]))
  t.teardown(async () => { await Promise.all(clients.map(async client => await client.close())) })
  return { app, streams, clients }
}

/** The events a client reads until it has `count` of them. */
async function read (client: InjectedEventStream, count: number): Promise<ParsedEvent[]> {
  const events: ParsedEvent[] = []
  if (count === 0) return events
  for await (const event of client) {
    events.push(event)
    if (events.length === count) break
  }
  return events
}

/** The hub's deliveries, as the diagnostics channel reports them (one message per slice). */
function deliveries (t: Test): number[] {
  const seen: number[] = []
  const listener = (message: unknown): void => { seen.push((message as { deliveries: number }).deliveries) }
  diagnostics.subscribe(CHANNELS.hubDeliver, listener)
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.hubDeliver, listener))
  return seen
}

t.test('a fan-out to more than a slice goes out a slice per turn of the loop; every subscriber gets every event once, in order', async t => {
  const { app, clients } = await subscribed(t, () => 'big')
  const seen = deliveries(t)
  let turned = -1
  await app.eventHub.publish('big', 'one')
  // A callback of the next turn of the loop runs before the last slice is written.
  setImmediate(() => { turned = seen.reduce((sum, n) => sum + n, 0) })
  await app.eventHub.publish('big', 'two')
  while (seen.reduce((sum, n) => sum + n, 0) < 2 * COUNT) await tick()
  t.ok(turned > 0 && turned < 2 * COUNT, `the loop turned between slices: ${turned} of ${2 * COUNT} deliveries made by then`)
  t.ok(seen.length >= 3, `written in ${seen.length} slices`)
  t.ok(Math.max(...seen) <= 2 * SLICE, 'none larger than a slice (of two events each)')
  await app.eventHub.publish('big', 'three')
  for (const client of [clients[0], clients[SLICE], clients[COUNT - 1]]) {
    t.same((await read(client, 3)).map(event => event.data), ['one', 'two', 'three'])
  }
  t.equal(app.eventHub.stats().delivered, 3 * COUNT, 'each event to each subscriber once')
})

t.test('what a stream is sent after a publish resolved goes after the event, even before its slice', async t => {
  // The last client reads another topic only.
  const { app, streams, clients } = await subscribed(t, i => i === COUNT ? 'elsewhere' : 'big', COUNT + 1)
  await app.eventHub.publish('big', 'published')
  // Two slices are written by the next turn of the loop; the last subscriber's is the third.
  await tick()
  // A stream of a topic the sliced flush does not write to has nothing to release.
  await streams[COUNT].message('other')
  // The last subscriber's slice has not been written yet: its own message releases the event first.
  const last = streams[COUNT - 1]
  await last.message('direct')
  await app.eventHub.publish('big', 'next')
  t.same((await read(clients[COUNT - 1], 3)).map(event => event.data), ['published', 'direct', 'next'])
  t.same((await read(clients[0], 2)).map(event => event.data), ['published', 'next'])
  t.same((await read(clients[COUNT], 1)).map(event => event.data), ['other'])
  // close() releases too: the event is written before the end.
  await app.eventHub.publish('big', 'last words')
  await tick()
  await streams[COUNT - 2].close()
  t.same((await read(clients[COUNT - 2], 3)).map(event => event.data), ['published', 'next', 'last words'])
})

t.test('a subscriber of several topics gets a sliced tick\'s events once, in position order; one that left gets none', async t => {
  // Every third client also reads 'side'; the last one is unsubscribed right after the publish, before its slice.
  const { app, streams, clients } = await subscribed(t, i => i % 3 === 0 ? 'big,side' : 'big')
  const ids: string[] = []
  for (const [topic, data] of [['big', 'a'], ['side', 'b'], ['big', 'c']]) ids.push(await app.eventHub.publish(topic, data))
  await tick()
  app.eventHub.unsubscribe(streams[COUNT - 1])
  await app.eventHub.publish('big', 'after')
  t.same((await read(clients[0], 4)).map(event => [event.data, event.lastEventId]), [['a', ids[0]], ['b', ids[1]], ['c', ids[2]], ['after', String(BigInt(ids[2]) + 1n)]])
  t.same((await read(clients[1], 3)).map(event => event.data), ['a', 'c', 'after'])
  await streams[COUNT - 1].message('still open')
  t.same((await read(clients[COUNT - 1], 1)).map(event => event.data), ['still open'], 'nothing from the topics it left')
})

t.test('a replay going live writes its pending events before the tick\'s newer ones', async t => {
  // The store's read is held while events arrive: they wait as pending; when the read returns, one more event is in
  // the tick, not yet flushed. Live, the subscriber gets the pending event first.
  const memory = new MemoryStore()
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  const store: EventStore = {
    append: async (topic, event) => await memory.append(topic, event),
    readAfter: async (topics, lastEventId) => {
      const replay = await memory.readAfter(topics, lastEventId)
      await gate
      return replay
    },
    listen: async (topic, listener) => await memory.listen(topic, listener),
    close: async () => await memory.close()
  }
  const app = await build(t, { heartbeat: false, hub: { store } })
  const first = await app.eventHub.publish('room', 'before')
  let subscribing: Promise<boolean> = Promise.resolve(false)
  app.get('/events', (_request, reply) => { subscribing = app.eventHub.subscribe(reply.sse(), 'room', { lastEventId: first }) })
  const client = await injectEventStream(app, '/events')
  await tick()
  await app.eventHub.publish('room', 'pending')
  await tick()
  release()
  // In the same tick as the read's return: this one is in the writer's tick when the replay goes live.
  await app.eventHub.publish('room', 'newer')
  t.equal(await subscribing, true)
  t.same((await read(client, 2)).map(event => event.data), ['pending', 'newer'])
  await client.close()
})
