// One hub instance in a process of its own, for the presence benchmark (bench/presence.ts) and the Redis tests that
// kill an instance: `node dist/bench/hub-instance.js <redis url|memory> <prefix> [presence ttl ms]`.
// GET /events?q=<JSON { topics, filter?, presence?, from? }> subscribes the stream; GET /presence/:topic answers
// who is on the topic; POST /publish/:topic (JSON { data, tags? }) publishes. Prints "ready <port>".
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

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
process.stdout.write(`ready ${(app.server.address() as { port: number }).port}\n`)
