// The server of bench/compress.ts: `node --expose-gc dist/bench/compress-server.js <gzip|identity> [window] [level]`.
//   GET  /subscribe       a stream subscribed to the hub topic "bench" (compressed when the client accepts gzip)
//   POST /publish?n&kind  n events of a bench stream (prices, chat, tokens), one per turn of the event loop; answers once every
//                         stream's socket took them all, with the CPU and wall time that took
//   GET  /stats           memory after a GC and the number of streams
// Prints its port on stdout once listening.
import Fastify from 'fastify'
import type { ServerResponse } from 'node:http'
import fastifyEventStream from '../index.js'
import { frames, type StreamKind } from './compress-streams.js'

const [mode, windowArg, levelArg] = process.argv.slice(2)
const compression = mode === 'gzip' ? { encodings: ['gzip'] as const, window: Number(windowArg ?? 4096), level: Number(levelArg ?? 6) } : false
const app = Fastify()
await app.register(fastifyEventStream, { heartbeat: false, reconnectWindow: false, compression })
const responses = new Set<ServerResponse>()
app.get('/subscribe', (_request, reply) => {
  responses.add(reply.raw)
  reply.raw.on('close', () => responses.delete(reply.raw))
  app.eventHub.subscribe(reply.sse(), 'bench')
})
let offset = 0
app.post<{ Querystring: { n: string, kind: StreamKind } }>('/publish', async request => {
  const events = frames(request.query.kind, Number(request.query.n), 7 + offset++)
    .map(frame => /data: (.*)\n/.exec(frame.toString())?.[1] as string)
  const cpu = process.cpuUsage()
  const started = performance.now()
  // One event per turn of the event loop, as events that come from outside arrive (awaited publishes alone would all
  // run in one microtask drain, and every stream would get them as one batch).
  for (const data of events) {
    await app.eventHub.publish('bench', data, { event: request.query.kind })
    await new Promise(resolve => setImmediate(resolve))
  }
  while ([...responses].some(response => response.writableLength > 0)) await new Promise(resolve => setImmediate(resolve))
  const used = process.cpuUsage(cpu)
  return { cpuUs: used.user + used.system, wallMs: performance.now() - started, streams: responses.size }
})
app.get('/stats', async () => {
  globalThis.gc?.()
  globalThis.gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  return { rss, heapUsed, streams: app.openEventStreams }
})
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`${(app.server.address() as { port: number }).port}\n`)
// A normal exit on SIGINT, so that `--cpu-prof` writes its profile.
process.on('SIGINT', () => process.exit(0))
