// One benchmark server: `node dist/bench/server.js <implementation>`. Every implementation serves the same routes:
//   GET  /burst?n=N     N events of about 50 bytes with ids, respecting backpressure, then the end of the body
//   GET  /subscribe     an open stream that joins the broadcast set
//   POST /broadcast?seq one event to every subscriber; with &count=N N events (seq, seq+1, …), all in one tick, or
//                       with &spread=1 each in its own macrotask, or with &awaited=1 in a loop that awaits each
//                       broadcast (the hub's publish(); the others' broadcasts are synchronous)
//   GET  /stats         memory, CPU and subscriber count (after a GC when run with --expose-gc)
// It prints its port on stdout once listening.
import { once } from 'node:events'
import http from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyEventStream, { encodeMessage, type EventStream } from '../index.js'
import { ORDER, ORDER_SCHEMA } from './order.js'

// Peers are loaded by a name TypeScript does not resolve: @fastify/sse declares its own reply.sse.
const load = async (name: string): Promise<any> => await import(name)

export const PAYLOAD = 'x'.repeat(36)
const frame = (id: number): string => `id: ${id}\ndata: ${PAYLOAD}\n\n`

interface Impl {
  /** Options of the /burst route (its schema). */
  burstRoute?: object
  burst: (request: http.IncomingMessage, response: http.ServerResponse, n: number, reply?: any) => Promise<void>
  subscribe: (request: http.IncomingMessage, response: http.ServerResponse, reply?: any) => Promise<void> | void
  /** The hub's returns publish()'s promise, which an awaited loop waits for. */
  broadcast: (seq: number) => Promise<unknown> | undefined
  /** ours only: the same broadcast with stream.message() to each stream (encoded for each). */
  broadcastMessage?: (seq: number) => void
  subscribers: () => number
}

function stats (subscribers: number): object {
  globalThis.gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  const { user, system } = process.cpuUsage()
  return { rss, heapUsed, cpu: (user + system) / 1e6, subscribers }
}

/**
 * The broadcasts a /broadcast request asks for: `count` of them from `seq`, in one tick, one per macrotask, or in a
 * loop that awaits each (as users write a batch: `for (…) await app.eventHub.publish(…)`).
 */
async function broadcasts (url: URL, broadcast: (seq: number) => Promise<unknown> | undefined): Promise<void> {
  const seq = Number(url.searchParams.get('seq'))
  const count = Number(url.searchParams.get('count') ?? 1)
  const spread = url.searchParams.get('spread') === '1'
  const awaited = url.searchParams.get('awaited') === '1'
  for (let i = 0; i < count; i++) {
    if (spread && i > 0) await new Promise(resolve => setImmediate(resolve))
    if (awaited) await broadcast(seq + i)
    else broadcast(seq + i)
  }
}

/** The frame as one HTTP/1.1 chunk: size in hex, CRLF, frame, CRLF. */
function chunked (frame: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${frame.length.toString(16)}\r\n`), frame, Buffer.from('\r\n')])
}

/**
 * Plain node:http writing pre-encoded frames with `res.write()`; with `socket`, the floor: each broadcast framed
 * once as an HTTP chunk and that one buffer written straight to every subscriber's socket.
 */
async function nodeHttp (socket: boolean): Promise<http.Server> {
  const subscribers = new Set<http.ServerResponse>()
  let frames: Buffer[] = []
  const head = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' }
  return http.createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://x')
    if (url.pathname === '/burst') {
      const n = Number(url.searchParams.get('n'))
      if (frames.length !== n) frames = Array.from({ length: n }, (_, i) => Buffer.from(frame(i)))
      response.writeHead(200, head)
      for (const buffer of frames) if (!response.write(buffer)) await once(response, 'drain')
      response.end()
    } else if (url.pathname === '/subscribe') {
      response.writeHead(200, head)
      response.flushHeaders()
      subscribers.add(response)
      response.on('close', () => subscribers.delete(response))
    } else if (url.pathname === '/broadcast') {
      await broadcasts(url, seq => {
        const shared = Buffer.from(frame(seq))
        if (socket) {
          const chunk = chunked(shared)
          for (const subscriber of subscribers) subscriber.socket?.write(chunk)
        } else {
          for (const subscriber of subscribers) subscriber.write(shared)
        }
        return undefined
      })
      response.end('{}')
    } else {
      response.end(JSON.stringify(stats(subscribers.size)))
    }
  })
}

async function ours (app: FastifyInstance): Promise<Impl> {
  await app.register(fastifyEventStream, { heartbeat: false })
  const streams = new Set<EventStream>()
  return {
    async burst (_request, _response, n, reply) {
      const stream: EventStream = reply.sse()
      for (let i = 0; i < n; i++) await stream.message(PAYLOAD, { id: i })
      await stream.close()
    },
    subscribe (_request, _response, reply) {
      const stream: EventStream = reply.sse()
      streams.add(stream)
      stream.signal.addEventListener('abort', () => streams.delete(stream))
    },
    broadcast (seq) {
      const encoded = encodeMessage(PAYLOAD, { id: seq })
      for (const stream of streams) stream.write(encoded)
      return undefined
    },
    broadcastMessage (seq) {
      for (const stream of streams) stream.message(PAYLOAD, { id: seq })
      return undefined
    },
    subscribers: () => streams.size
  }
}

/** The hub: every broadcast is one publish to a topic (kept in the history, encoded once, written to all). */
async function oursHub (app: FastifyInstance): Promise<Impl> {
  const core = await ours(app)
  return {
    burst: core.burst,
    subscribe (_request, _response, reply) {
      app.eventHub.subscribe(reply.sse(), 'bench')
    },
    broadcast () {
      const published = app.eventHub.publish('bench', PAYLOAD)
      published.catch(() => {})
      return published
    },
    subscribers: () => app.eventHub.stats().subscribers.bench ?? 0
  }
}

/** The hub with the Prometheus metrics on, scraped every second as Prometheus would (in process: the same work). */
async function oursHubMetrics (app: FastifyInstance): Promise<Impl> {
  const hub = await oursHub(app)
  const { default: promClient } = await load('prom-client')
  const { default: eventStreamMetrics } = await import('../lib/metrics.js')
  const registry = new promClient.Registry()
  await app.register(eventStreamMetrics, { client: promClient, registry })
  setInterval(() => { registry.metrics().catch(() => {}) }, 1000).unref()
  return hub
}

async function fastifySse (app: FastifyInstance): Promise<Impl> {
  const { default: plugin } = await load('@fastify/sse')
  await app.register(plugin, { heartbeatInterval: 0 })
  const replies = new Set<any>()
  return {
    async burst (_request, _response, n, reply) {
      for (let i = 0; i < n; i++) await reply.sse.send({ id: String(i), data: PAYLOAD })
    },
    subscribe (_request, _response, reply) {
      reply.sse.keepAlive()
      replies.add(reply)
      reply.sse.onClose(() => replies.delete(reply))
      // @fastify/sse writes the head but leaves it unsent until the first event: flush it, as ours does.
      reply.sse.sendHeaders()
      reply.raw.flushHeaders()
    },
    broadcast (seq) {
      for (const reply of replies) reply.sse.send({ id: String(seq), data: PAYLOAD }).catch(() => {})
      return undefined
    },
    subscribers: () => replies.size
  }
}

async function fastifySseV2 (app: FastifyInstance): Promise<Impl> {
  const { FastifySSEPlugin } = await load('fastify-sse-v2')
  await app.register(FastifySSEPlugin)
  const replies = new Set<any>()
  return {
    async burst (_request, _response, n, reply) {
      reply.sse((async function * () {
        for (let i = 0; i < n; i++) yield { id: String(i), data: PAYLOAD }
      })())
      await once(reply.raw, 'close')
    },
    subscribe (request, _response, reply) {
      reply.sse({ retry: 3000 })
      replies.add(reply)
      request.on('close', () => replies.delete(reply))
    },
    broadcast (seq) {
      for (const reply of replies) reply.sse({ id: String(seq), data: PAYLOAD })
      return undefined
    },
    subscribers: () => replies.size
  }
}

async function betterSse (_app: FastifyInstance): Promise<Impl> {
  const { createSession, createChannel } = await load('better-sse')
  const channel = createChannel()
  return {
    async burst (request, response, n) {
      const session = await createSession(request, response, { keepAlive: null, retry: null })
      for (let i = 0; i < n; i++) {
        session.push(PAYLOAD, 'message', String(i))
        if (response.writableNeedDrain) await once(response, 'drain')
      }
      response.end()
    },
    async subscribe (request, response) {
      const session = await createSession(request, response, { keepAlive: null, retry: null })
      channel.register(session)
    },
    broadcast (seq) {
      channel.broadcast(PAYLOAD, 'message', { eventId: String(seq) })
      return undefined
    },
    subscribers: () => channel.sessionCount
  }
}

/**
 * ours with typed JSON events of about 200 bytes: the burst sends them with `stream.send()` and the broadcast with
 * the hub's `send()`, serialized with `JSON.stringify()`, or, with `schema`, by the events' compiled schema (the
 * route's `schema.events` and the plugin's `hub.events`).
 */
function oursSend (schema: boolean) {
  return async (app: FastifyInstance): Promise<Impl> => {
    const events = { order: ORDER_SCHEMA }
    await app.register(fastifyEventStream, { heartbeat: false, hub: schema ? { events } : {} })
    return {
      burstRoute: schema ? { schema: { events } } : {},
      async burst (_request, _response, n, reply) {
        const stream: EventStream = reply.sse()
        for (let i = 0; i < n; i++) await stream.send('order', ORDER, { id: i })
        await stream.close()
      },
      subscribe (_request, _response, reply) {
        app.eventHub.subscribe(reply.sse(), 'bench')
      },
      broadcast () {
        const published = app.eventHub.send('bench', 'order', ORDER)
        published.catch(() => {})
        return published
      },
      subscribers: () => app.eventHub.stats().subscribers.bench ?? 0
    }
  }
}

/** ours, broadcasting with a loop of stream.message(): each event encoded for each stream. */
async function oursMessage (app: FastifyInstance): Promise<Impl> {
  const core = await ours(app)
  return { ...core, broadcast: core.broadcastMessage as Impl['broadcast'] }
}

async function fastifyServer (name: string): Promise<http.Server> {
  const app = Fastify()
  const impls: Record<string, (app: FastifyInstance) => Promise<Impl>> = {
    ours,
    'ours (message)': oursMessage,
    'ours (hub)': oursHub,
    'ours (hub+metrics)': oursHubMetrics,
    'ours (send json)': oursSend(false),
    'ours (send schema)': oursSend(true),
    '@fastify/sse': fastifySse,
    'fastify-sse-v2': fastifySseV2,
    'better-sse': betterSse
  }
  const impl = await impls[name](app)
  const raw = name === 'better-sse'
  // @fastify/sse serves a route as SSE only when the route says so.
  const options = (name === '@fastify/sse' ? { sse: 'only' } : {}) as object
  app.get<{ Querystring: { n: string } }>('/burst', { ...options, ...impl.burstRoute }, async (request, reply) => {
    if (raw) reply.hijack()
    await impl.burst(request.raw, reply.raw, Number(request.query.n), reply)
  })
  app.get('/subscribe', options, async (request, reply) => {
    if (raw) reply.hijack()
    await impl.subscribe(request.raw, reply.raw, reply)
  })
  app.post('/broadcast', async request => {
    await broadcasts(new URL(request.url, 'http://x'), seq => impl.broadcast(seq))
    return {}
  })
  app.get('/stats', async () => stats(impl.subscribers()))
  await app.ready()
  return app.server
}

// A clean exit on SIGTERM, so that `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))

const name = process.argv[2]
const server = name.startsWith('node:http') ? await nodeHttp(name === 'node:http (socket)') : await fastifyServer(name)
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number }
  process.stdout.write(`${address.port}\n`)
})
