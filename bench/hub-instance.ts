// One hub instance in a process of its own, for the presence benchmark (bench/presence.ts) and the Redis tests that
// kill an instance: `node dist/bench/hub-instance.js <redis url|memory> <prefix> [presence ttl ms]`.
// GET /events?q=<JSON { topics, filter?, presence?, from? }> subscribes the stream; GET /presence/:topic answers
// who is on the topic; POST /publish/:topic (JSON { data, tags? }) publishes; POST /broadcast and GET /stats serve
// the filter benchmark. Prints "ready <port>".
import Fastify from 'fastify'
import fastifyEventStream, { type PresenceOption, type TagFilter } from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const [redisUrl, prefix, ttl] = process.argv.slice(2)
process.on('SIGTERM', () => process.exit(0))
const app = Fastify({ logger: { level: 'warn' }, forceCloseConnections: true })
const store = redisUrl === 'memory' ? undefined : new RedisStore({ connection: redisUrl, prefix, log: app.log })
await app.register(fastifyEventStream, {
  heartbeat: false,
  reconnectWindow: false,
  hub: { store, presence: { ttl: ttl === undefined ? 30_000 : Number(ttl) } }
})

interface Query { topics: string[], filter?: TagFilter, presence?: PresenceOption, from?: string }
app.get<{ Querystring: { q: string } }>('/events', (request, reply) => {
  const { topics, filter, presence, from } = JSON.parse(request.query.q) as Query
  app.eventHub.subscribe(reply.sse(), topics, { filter, presence, lastEventId: from }).catch(() => {})
})
app.get<{ Params: { topic: string } }>('/presence/:topic', async request => await app.eventHub.presence(request.params.topic))
app.post<{ Params: { topic: string }, Body: { data: string, tags?: Record<string, string> } }>('/publish/:topic', async request => {
  return { id: await app.eventHub.publish(request.params.topic, request.body.data, { tags: request.body.tags }) }
})

// The filter benchmark (bench/filter.ts): `count` events of about 200 bytes tagged team t0, t1, … t<teams-1> in
// turn, published in a loop that awaits each (`spread=1`: each in a macrotask of its own) to the topic feed, or
// (`split=1`) untagged to a topic per team, feed-t0 …; and the CPU used.
const PAYLOAD = JSON.stringify({ text: 'x'.repeat(170) })
app.post<{ Querystring: { count: string, teams: string, spread?: string, split?: string } }>('/broadcast', async request => {
  const count = Number(request.query.count)
  const teams = Number(request.query.teams)
  for (let i = 0; i < count; i++) {
    if (request.query.spread === '1') await new Promise(resolve => setImmediate(resolve))
    if (request.query.split === '1') await app.eventHub.publish(`feed-t${i % teams}`, PAYLOAD)
    else await app.eventHub.publish('feed', PAYLOAD, { tags: { team: `t${i % teams}` } })
  }
  return { published: count }
})
app.get('/stats', async () => {
  const { user, system } = process.cpuUsage()
  const subscribers = Object.values(app.eventHub.stats().subscribers).reduce((sum, n) => sum + n, 0)
  return { subscribers, cpu: (user + system) / 1e6, rss: process.memoryUsage().rss }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
process.stdout.write(`ready ${(app.server.address() as { port: number }).port}\n`)
