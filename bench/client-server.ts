// The server of the client benchmark (bench/client-read.ts): `node dist/bench/client-server.js <port> <redis url>
// <prefix> [publish ms]`. GET /burst?n=N sends N tick events (JSON, pre-encoded once) and ends; GET /events
// subscribes to the `ticks` topic through a hub whose history is in Redis, so that an instance started on the same
// port after this one resumes its clients. With [publish ms], publishes a tick { n } every so many ms (one publisher
// for the whole run, apart from the instances the clients reconnect between). Prints "ready <port>"; SIGTERM closes
// the app as a deploy would (every stream gets a reconnect hint from 1-5 s).
import Fastify from 'fastify'
import fastifyEventStream, { encodeMessage, type EncodedMessage } from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const [port, redisUrl, prefix, publishMs] = [Number(process.argv[2]), process.argv[3], process.argv[4], Number(process.argv[5] ?? 0)]
const app = Fastify({ logger: { level: 'warn' } })
const store = new RedisStore({ connection: redisUrl, prefix, log: app.log })
await app.register(fastifyEventStream, { heartbeat: false, retry: 1000, reconnectWindow: [1000, 5000], hub: { store, historySize: 100_000 } })

const TEXT = 'the quick brown fox jumps over the lazy dog'
const frames = new Map<number, EncodedMessage[]>()
function burst (n: number): EncodedMessage[] {
  let made = frames.get(n)
  if (made === undefined) {
    made = Array.from({ length: n }, (_, i) => encodeMessage(JSON.stringify({ n: i + 1, text: TEXT }), { id: i + 1, event: 'tick' }))
    frames.set(n, made)
  }
  return made
}

app.get<{ Querystring: { n: string } }>('/burst', async (request, reply) => {
  const stream = reply.sse()
  for (const frame of burst(Number(request.query.n))) {
    if (!await stream.write(frame)) return
  }
  await stream.close()
})
app.get('/events', (_request, reply) => { app.eventHub.subscribe(reply.sse(), ['ticks']).catch(() => {}) })

if (publishMs > 0) {
  let n = 0
  const timer = setInterval(() => { app.eventHub.send('ticks', 'tick', { n: ++n, text: TEXT }).catch(() => {}) }, publishMs)
  app.addHook('preClose', async () => clearInterval(timer))
}
await app.listen({ port, host: '127.0.0.1' })
process.stdout.write(`ready ${(app.server.address() as { port: number }).port}\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
