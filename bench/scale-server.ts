// The scale scenario's server: `node dist/bench/scale-server.js <ours (hub)|node:http> <heartbeat ms>`.
//   GET  /subscribe     an open stream (ours: subscribed to the hub topic "bench")
//   POST /broadcast?seq one event to every stream (ours: one publish)
//   GET  /stats         memory after a GC, streams, and the CPU and wall time of the last heartbeat pass
//   POST /shutdown      closes everything, prints "closed <ms>" on stdout, exits
// Prints its port on stdout once listening.
import http from 'node:http'
import Fastify from 'fastify'
import fastifyEventStream, { encodeComment } from '../index.js'

const [name, heartbeatArg] = process.argv.slice(2)
const HEARTBEAT = Number(heartbeatArg)
const payload = (seq: number): string => `${'x'.repeat(36)}-${seq}`

// The heartbeat pass is timed from outside the plugin: the one interval timer with the heartbeat's delay is wrapped.
const pass = { passes: 0, cpuMs: 0, wallMs: 0 }
const setIntervalOriginal = globalThis.setInterval
globalThis.setInterval = ((callback: () => void, delay: number, ...args: unknown[]) => {
  if (delay !== HEARTBEAT) return setIntervalOriginal(callback, delay, ...args)
  return setIntervalOriginal(() => {
    const cpu = process.cpuUsage()
    const started = performance.now()
    callback()
    // Writes deferred to the next tick (a batch, a cork) are part of the pass.
    setImmediate(() => {
      const used = process.cpuUsage(cpu)
      Object.assign(pass, { passes: pass.passes + 1, cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - started })
    })
  }, delay)
}) as typeof setInterval

function stats (streams: number): string {
  globalThis.gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  return JSON.stringify({ rss, heapUsed, streams, heartbeat: pass })
}

function exitAfter (started: number): void {
  process.stdout.write(`closed ${performance.now() - started}\n`)
  process.exit(0)
}

async function ours (): Promise<http.Server> {
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: HEARTBEAT, reconnectWindow: false })
  app.get('/subscribe', (_request, reply) => { app.eventHub.subscribe(reply.sse(), 'bench') })
  app.post<{ Querystring: { seq: string } }>('/broadcast', async request => {
    await app.eventHub.publish('bench', payload(Number(request.query.seq)))
    return {}
  })
  app.get('/stats', async () => stats(app.openEventStreams))
  app.post('/shutdown', (_request, reply) => {
    reply.send('{}')
    const started = performance.now()
    app.close().then(() => exitAfter(started), () => process.exit(1))
  })
  await app.ready()
  return app.server
}

/** Plain node:http: the same streams, a comment to every stream on the same interval, res.write() of one Buffer. */
async function nodeHttp (): Promise<http.Server> {
  const streams = new Set<http.ServerResponse>()
  const comment = encodeComment('')
  setInterval(() => { for (const response of streams) response.write(comment) }, HEARTBEAT).unref()
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://x')
    if (url.pathname === '/subscribe') {
      response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
      response.flushHeaders()
      streams.add(response)
      response.on('close', () => streams.delete(response))
    } else if (url.pathname === '/broadcast') {
      const seq = Number(url.searchParams.get('seq'))
      const shared = Buffer.from(`id: ${seq}\ndata: ${payload(seq)}\n\n`)
      for (const stream of streams) stream.write(shared)
      response.end('{}')
    } else if (url.pathname === '/shutdown') {
      response.end('{}')
      const started = performance.now()
      for (const stream of streams) stream.end()
      server.close(() => exitAfter(started))
      server.closeIdleConnections()
    } else {
      response.end(stats(streams.size))
    }
  })
  return server
}

const server = name === 'node:http' ? await nodeHttp() : await ours()
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`))
