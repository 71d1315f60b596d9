// One instance of the fleet benchmarks (bench/redis-fleet.ts): `node dist/bench/redis-instance.js <redis url|memory>
// <prefix>`. A Fastify app whose hub keeps its history in Redis (or in memory, for comparison); GET /events?user=N&shared=K subscribes the stream to
// `user:N` and `shared:K` (resuming from Last-Event-ID). Prints "ready <port>". On stdin, "publish <rate> <seconds>
// <users> <shared topics> <shared per second>" publishes through its own hub at that rate, to a random user's
// topic and now and then to a shared one, each event's data "<topic>|<monotonic µs>"; it then prints "published"
// and, as JSON, the acknowledged publishes per topic and how many failed (timed out: kept or not). "missed <users>" publishes an event to each user's topic and five to shared:0.
// "flood <count> <concurrency> <topic>" publishes as fast as accepted and prints "flooded <ms>"; "writes" prints
// how many socket writes went to HTTP clients so far; "stats" prints the store's stats as JSON.
import net from 'node:net'
import readline from 'node:readline'
import Fastify from 'fastify'
import fastifyEventStream from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const [redisUrl, prefix] = process.argv.slice(2)
// A clean exit on SIGTERM, so that `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
const app = Fastify({ logger: { level: 'warn' } })
const store = redisUrl === 'memory' ? undefined : new RedisStore({ connection: redisUrl, prefix, log: app.log })
await app.register(fastifyEventStream, { heartbeat: false, reconnectWindow: false, hub: { store } })
app.get<{ Querystring: { user: string, shared: string } }>('/events', (request, reply) => {
  app.eventHub.subscribe(reply.sse(), [`user:${request.query.user}`, `shared:${request.query.shared}`]).catch(() => {})
})
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`ready ${(app.server.address() as { port: number }).port}\n`)

const now = (): bigint => process.hrtime.bigint() / 1000n

// Socket writes to the HTTP clients (not to Redis), for "writes": how many a delivered batch costs.
let httpWrites = 0
const write = net.Socket.prototype.write
const redisPort = redisUrl === 'memory' ? -1 : Number(new URL(redisUrl).port)
net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
  if (this.remotePort !== redisPort) httpWrites++
  return (write as (...args: unknown[]) => boolean).apply(this, args)
} as typeof write

/** Publishes `count` events to a topic as fast as they are accepted, `concurrency` at a time; resolves with the ms. */
async function flood (count: number, concurrency: number, topic: string): Promise<number> {
  const started = Date.now()
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++
      await app.eventHub.publish(topic, `${topic}|${now()}`).catch(() => {})
    }
  }))
  return Date.now() - started
}
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Publishes `rate` events a second for `seconds`, in slices of 10 ms; resolves with the count per topic. */
async function publish (rate: number, seconds: number, users: number, shared: number, sharedRate: number): Promise<{ counts: Record<string, number>, failed: number }> {
  const counts: Record<string, number> = {}
  let failed = 0
  const started = Date.now()
  let sent = 0
  let sharedSent = 0
  let inFlight = 0
  const done = (): void => { inFlight-- }
  while (Date.now() - started < seconds * 1000) {
    const elapsed = (Date.now() - started) / 1000
    while (sent < rate * elapsed) {
      const topic = sharedSent < sharedRate * elapsed ? `shared:${sharedSent++ % shared}` : `user:${Math.floor(Math.random() * users)}`
      counts[topic] = (counts[topic] ?? 0) + 1
      sent++
      inFlight++
      app.eventHub.publish(topic, `${topic}|${now()}`).then(done, () => { counts[topic]--; failed++; done() })
    }
    await sleep(10)
  }
  // eslint-disable-next-line no-unmodified-loop-condition -- the publishes' callbacks count it down
  while (inFlight > 0) await sleep(10)
  return { counts, failed }
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  const [command, ...args] = line.split(' ')
  if (command === 'publish') {
    const [rate, seconds, users, shared, sharedRate] = args.map(Number)
    process.stdout.write(`published ${JSON.stringify(await publish(rate, seconds, users, shared, sharedRate))}\n`)
  } else if (command === 'missed') {
    // What a storm's clients miss while they are away: an event for each user, and five on the shared topic.
    const users = Number(args[0])
    const all = Array.from({ length: users }, (_, user) => app.eventHub.publish(`user:${user}`, `user:${user}|${now()}`))
    for (let i = 0; i < 5; i++) all.push(app.eventHub.publish('shared:0', `shared:0|${now()}`))
    await Promise.all(all)
    process.stdout.write('missed\n')
  } else if (command === 'flood') {
    process.stdout.write(`flooded ${await flood(Number(args[0]), Number(args[1]), args[2])}\n`)
  } else if (command === 'writes') {
    process.stdout.write(`writes ${httpWrites}\n`)
  } else if (command === 'stats') {
    process.stdout.write(`stats ${JSON.stringify(app.eventHub.stats().store)}\n`)
  }
}
await app.close()
