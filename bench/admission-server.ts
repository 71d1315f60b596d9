// The admission scenario's server: `node dist/bench/admission-server.js <maxStreams>` (the default retry window).
//   GET  /subscribe   an event stream subscribed to the hub topic "ticks", unless admission control refuses it
//   GET  /stats       open streams, the most ever open at once, refusals, event-loop delay p99 and the server's own
//                     refusal time p99 (request arrival to answer), since the last /stats
//   POST /cap?n       sets admission.maxStreams while the server runs
//   POST /publish?ms  publishes a timestamp every `ms` (0 stops)
// Prints its port on stdout once listening.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'
import fastifyEventStream from '../index.js'

const cap = Number(process.argv[2])
const app = Fastify()
await app.register(fastifyEventStream, { heartbeat: false, admission: { maxStreams: cap } })
let mostOpen = 0
app.get('/subscribe', (_request, reply) => {
  const stream = reply.sse()
  if (stream.closed) return
  // Counted as each stream opens: a cap overrun, however short, shows.
  mostOpen = Math.max(mostOpen, app.openEventStreams)
  app.eventHub.subscribe(stream, 'ticks').catch(() => {})
})
// The server's own part of a refusal: from the request's arrival (onRequest) to its answer handed to the socket.
let refusalMs: number[] = []
app.addHook('onResponse', async (_request, reply) => { if (reply.statusCode === 503) refusalMs.push(reply.elapsedTime) })
const delay = monitorEventLoopDelay({ resolution: 10 })
delay.enable()
app.get('/stats', async () => {
  const sorted = Float64Array.from(refusalMs).sort()
  const serverRefusalP99 = sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]
  const stats = { open: app.openEventStreams, mostOpen, refused: app.eventStreamAdmission.stats().refused.streams, eldP99: delay.percentile(99) / 1e6, serverRefusalP99 }
  delay.reset()
  refusalMs = []
  mostOpen = app.openEventStreams
  return stats
})
app.post<{ Querystring: { n: string } }>('/cap', async request => {
  app.eventStreamAdmission.maxStreams = Number(request.query.n)
  return {}
})
let timer: NodeJS.Timeout | undefined
app.post<{ Querystring: { ms: string } }>('/publish', async request => {
  clearInterval(timer)
  const ms = Number(request.query.ms)
  if (ms > 0) timer = setInterval(() => { app.eventHub.publish('ticks', String(performance.timeOrigin + performance.now())).catch(() => {}) }, ms)
  return {}
})
// The README's advice for a server that takes reconnect storms: a listen backlog above Node's 511.
await app.listen({ port: 0, host: '127.0.0.1', backlog: Number(process.env.BENCH_ADMISSION_BACKLOG ?? 4096) })
const address = app.server.address()
process.stdout.write(`${typeof address === 'object' && address !== null ? address.port : 0}\n`)

// A clean exit on SIGTERM, so that `node --cpu-prof` (BENCH_NODE_ARGS) writes its profile.
process.on('SIGTERM', () => process.exit(0))
