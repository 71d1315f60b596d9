// The admission scenario's server: `node dist/bench/admission-server.js <maxStreams>` (the default retry window).
//   GET  /subscribe   an event stream subscribed to the hub topic "ticks", unless admission control refuses it
//   GET  /stats       open streams, the most ever open at once, refusals, event-loop delay p99
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
const delay = monitorEventLoopDelay({ resolution: 10 })
delay.enable()
app.get('/stats', async () => {
  const stats = { open: app.openEventStreams, mostOpen, refused: app.eventStreamAdmission.stats().refused.streams, eldP99: delay.percentile(99) / 1e6 }
  delay.reset()
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
await app.listen({ port: 0, host: '127.0.0.1', backlog: Number(process.env.BENCH_ADMISSION_BACKLOG ?? 511) })
const address = app.server.address()
process.stdout.write(`${typeof address === 'object' && address !== null ? address.port : 0}\n`)
