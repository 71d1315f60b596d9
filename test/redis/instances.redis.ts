// Two Fastify instances on two ports sharing one history through Redis, with real HTTP clients.
import fc from 'fast-check'
import t, { type Test } from 'tap'
import type { ParsedEvent } from '../../index.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { SHARED_REDIS, hubServer, sseClient, uniquePrefix, until, type SseClient } from './helpers.js'

async function instances (t: Test, prefix: string, count = 2): Promise<Array<Awaited<ReturnType<typeof hubServer>>>> {
  const servers = []
  for (let i = 0; i < count; i++) servers.push(await hubServer(t, new RedisStore({ connection: SHARED_REDIS, prefix })))
  return servers
}

const summary = (events: ParsedEvent[]): string[] => events.map(event => `${event.lastEventId} ${event.type} ${event.data}`)

t.test('publish on A: subscribers on A and B get the same events in the same order with the same ids', async t => {
  const [a, b] = await instances(t, uniquePrefix(t))
  const onA = await sseClient(t, `${a.url}/events?topics=news,chat`)
  const onB = await sseClient(t, `${b.url}/events?topics=news,chat`)
  await until(() => onA.lastEventId() !== '' && onB.lastEventId() !== '', 'the position frames')
  const ids = []
  for (let i = 0; i < 10; i++) {
    const hub = (i % 3 === 0 ? b : a).app.eventHub
    ids.push(await hub.publish(i % 2 === 0 ? 'news' : 'chat', `item ${i}`, { event: i % 2 === 0 ? 'news' : 'chat' }))
  }
  await onA.received(10)
  await onB.received(10)
  t.same(onA.events.map(event => event.lastEventId), ids, 'the ids publish() returned, in publish order')
  t.same(summary(onB.events), summary(onA.events), 'B got exactly what A got')
})

t.test('a client that read from A reconnects to B with its id and resumes with no gap and no duplicate', async t => {
  const [a, b] = await instances(t, uniquePrefix(t))
  const first = await sseClient(t, `${a.url}/events?topics=news`)
  await until(() => first.lastEventId() !== '', 'the position frame')
  for (let i = 0; i < 3; i++) await a.app.eventHub.publish('news', `n${i}`)
  await first.received(3)
  first.close()
  for (let i = 3; i < 7; i++) await a.app.eventHub.publish('news', `n${i}`)
  const second = await sseClient(t, `${b.url}/events?topics=news`, first.lastEventId())
  await second.received(4)
  await b.app.eventHub.publish('news', 'n7')
  await second.received(5)
  t.same([...first.events, ...second.events].map(event => event.data), ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'])
})

type Action =
  | { kind: 'publish', instance: number, topic: string }
  | { kind: 'reconnect', client: number, instance: number }

const CLIENT_TOPICS = [['a'], ['a', 'b'], ['b', 'c']]

/** A client across its connections: everything it received, and the id it would reconnect with. */
interface Logical {
  topics: string[]
  start: string
  events: ParsedEvent[]
  connection: SseClient
  resume: string
}

t.test('property: publishes on both instances race reconnects to either; every client gets the store\'s order, no gap, no duplicate', async t => {
  const prefix = uniquePrefix(t)
  const servers = await instances(t, prefix)
  const reference = new RedisStore({ connection: SHARED_REDIS, prefix })
  t.teardown(() => reference.close())
  const action = fc.oneof(
    fc.record({ kind: fc.constant('publish' as const), instance: fc.nat(1), topic: fc.constantFrom('a', 'b', 'c') }),
    fc.record({ kind: fc.constant('reconnect' as const), client: fc.nat(2), instance: fc.nat(1) })
  )
  let runs = 0
  await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 4, maxLength: 24 }), async (actions: Action[]) => {
    runs++
    const clients: Logical[] = []
    for (const topics of CLIENT_TOPICS) {
      const connection = await sseClient(t, `${servers[0].url}/events?topics=${topics.join(',')}`)
      await until(() => connection.lastEventId() !== '', 'the position frame')
      clients.push({ topics, start: connection.lastEventId(), events: [], connection, resume: connection.lastEventId() })
    }
    const publishes: Array<Promise<string>> = []
    for (const step of actions) {
      if (step.kind === 'publish') {
        // Not awaited: publishes race the reconnects that follow.
        publishes.push(servers[step.instance].app.eventHub.publish(step.topic, `${step.topic}${publishes.length}`))
        continue
      }
      const client = clients[step.client]
      client.connection.close()
      client.events.push(...client.connection.events)
      client.resume = client.connection.lastEventId() === '' ? client.resume : client.connection.lastEventId()
      client.connection = await sseClient(t, `${servers[step.instance].url}/events?topics=${client.topics.join(',')}`, client.resume)
    }
    await Promise.all(publishes)
    for (const client of clients) {
      const expected = (await reference.readAfter(client.topics, client.start)).events ?? []
      await until(() => client.events.length + client.connection.events.length >= expected.length, 'every event to arrive')
      // A moment for anything extra (a duplicate) to show up.
      await new Promise(resolve => setTimeout(resolve, 20))
      client.connection.close()
      const received = [...client.events, ...client.connection.events]
      const want = expected.map(event => `${event.id} message ${event.data}`)
      if (summary(received).join('|') !== want.join('|')) {
        throw new Error(`client on ${client.topics.join(',')}: got ${summary(received).join(', ')}; want ${want.join(', ')}`)
      }
    }
  }), { numRuns: 25 })
  t.equal(runs, 25, '25 runs, each client\'s sequence equal to the store\'s order after its resume id')
})
