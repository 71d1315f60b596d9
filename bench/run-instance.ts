// One instance for the run benchmarks (bench/runs.ts) and the Redis run tests: `node dist/bench/run-instance.js
// <redis url|memory> <prefix> [lease ms]`. POST /runs/:key?tokens=N&rate=R starts a run of a fake model that yields N
// tokens at R per second (each token's data "<index>|<monotonic µs>") and streams it; GET /runs/:key reads a run
// (Last-Event-ID resumes); DELETE /runs/:key cancels it; GET /plain?tokens=N&rate=R streams the same tokens the
// plain way, reply.sse() + consume(), for comparison. The floor of any delivery through Redis, with a Redis store:
// GET /floor/:key?tokens=N&rate=R&source=<port> subscribes to a channel of the key (bare ioredis), then has the
// instance at <port> (this one or another) run the model with POST /floor/:key, which PUBLISHes each token as it is
// made; each message is written to the stream as it arrives: nothing stored, no batching, no resuming. Prints "ready <port>".
import Fastify from 'fastify'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import fastifyEventStream from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const [redisUrl, prefix, lease] = process.argv.slice(2)
process.on('SIGTERM', () => process.exit(0))
const app = Fastify({ logger: { level: 'warn' }, forceCloseConnections: true })
const store = redisUrl === 'memory' ? undefined : new RedisStore({ connection: redisUrl, prefix, log: app.log, leaseCheck: 200 })
await app.register(fastifyEventStream, {
  heartbeat: false,
  reconnectWindow: false,
  hub: { store },
  runs: { lease: lease === undefined ? 10_000 : Number(lease), maxRuns: 100_000 }
})

const now = (): bigint => process.hrtime.bigint() / 1000n

/** A fake model: `tokens` tokens at `rate` per second, each stamped with when it was made. */
async function * model (tokens: number, rate: number, signal?: AbortSignal): AsyncGenerator<string> {
  const gap = 1000 / rate
  const start = Date.now()
  for (let i = 0; i < tokens && signal?.aborted !== true; i++) {
    const due = start + i * gap - Date.now()
    if (due > 0) await sleep(due)
    yield `${i}|${now()}`
  }
}

interface Query { tokens?: string, rate?: string }
app.post<{ Params: { key: string }, Querystring: Query }>('/runs/:key', async (request, reply) => {
  const { tokens = '500', rate = '50' } = request.query
  await app.eventRuns.stream(reply, request.params.key, signal => model(Number(tokens), Number(rate), signal))
})
app.put<{ Params: { key: string }, Querystring: Query }>('/runs/:key', async (request) => {
  const { tokens = '500', rate = '50' } = request.query
  const { started } = await app.eventRuns.start(request.params.key, signal => model(Number(tokens), Number(rate), signal))
  return { started }
})
app.get<{ Params: { key: string } }>('/runs/:key', async (request, reply) => {
  await app.eventRuns.read(reply, request.params.key)
})
app.delete<{ Params: { key: string } }>('/runs/:key', async (request) => {
  return { cancelled: await app.eventRuns.cancel(request.params.key) }
})
app.get<{ Querystring: Query }>('/plain', (request, reply) => {
  const { tokens = '500', rate = '50' } = request.query
  const stream = reply.sse()
  stream.consume(model(Number(tokens), Number(rate), stream.signal)).catch(() => {})
})
app.get('/stats', async () => app.eventRuns.stats())

// The floor's two connections are opened by its first request: the Redis run tests use this instance too.
let floor: { publisher: Redis, subscriber: Redis, readers: Map<string, (message: string) => void> } | undefined
app.addHook('onClose', async () => { floor?.publisher.disconnect(); floor?.subscriber.disconnect() })
function floorConnections (): NonNullable<typeof floor> {
  if (floor !== undefined) return floor
  const publisher = new Redis(redisUrl).on('error', () => {})
  const subscriber = new Redis(redisUrl).on('error', () => {})
  const readers = new Map<string, (message: string) => void>()
  subscriber.on('message', (channel: string, message: string) => readers.get(channel)?.(message))
  floor = { publisher, subscriber, readers }
  return floor
}
app.get<{ Params: { key: string }, Querystring: Query & { source: string } }>('/floor/:key', async (request, reply) => {
  const { tokens = '500', rate = '50', source } = request.query
  const { subscriber, readers } = floorConnections()
  const channel = `${prefix}:floor:${request.params.key}`
  await subscriber.subscribe(channel)
  const stream = reply.sse()
  let index = 0
  readers.set(channel, message => {
    if (message === 'end') {
      readers.delete(channel)
      subscriber.unsubscribe(channel).catch(() => {})
      stream.close().catch(() => {})
      return
    }
    stream.message(message, { id: String(index++) }).catch(() => {})
  })
  http.request({ host: '127.0.0.1', port: Number(source), method: 'POST', path: `/floor/${request.params.key}?tokens=${tokens}&rate=${rate}`, agent: false }, response => response.resume()).end()
})
app.post<{ Params: { key: string }, Querystring: Query }>('/floor/:key', async (request) => {
  const { tokens = '500', rate = '50' } = request.query
  const { publisher } = floorConnections()
  const channel = `${prefix}:floor:${request.params.key}`
  ;(async () => {
    for await (const token of model(Number(tokens), Number(rate))) publisher.publish(channel, token).catch(() => {})
    publisher.publish(channel, 'end').catch(() => {})
  })().catch(() => {})
  return {}
})

// A reconnect storm fills the default accept queue (511) on loopback: the kernel then drops SYNs, which cost a 1 s retry.
await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
process.stdout.write(`ready ${(app.server.address() as { port: number }).port}\n`)
