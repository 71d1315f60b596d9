// A subscriber whose replay goes live gets its pending events before newer ones that wait in the hub's tick.
import t from 'tap'
import { injectEventStream, MemoryStore, type EventStore, type InjectedEventStream, type ParsedEvent } from '../index.js'
import { build, tick } from './helpers.js'

/** The events a client reads until it has `count` of them. */
async function read (client: InjectedEventStream, count: number): Promise<ParsedEvent[]> {
  const events: ParsedEvent[] = []
  for await (const event of client) {
    events.push(event)
    if (events.length === count) break
  }
  return events
}

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
