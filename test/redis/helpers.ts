import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import http from 'node:http'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import fastifyEventStream, { EventStreamParser, type EventStore, type ParsedEvent } from '../../index.js'
import { RedisStore, type RedisStoreSettings } from '../../lib/stores/redis.js'
import { freePort } from '../helpers.js'

/** The shared Redis of these machines, for the normal paths. */
export const SHARED_REDIS = 'redis://127.0.0.1:6379'

/** A prefix no other test uses; its keys are deleted when the test ends. */
export function uniquePrefix (t: Test): string {
  const prefix = `{test-${randomBytes(6).toString('hex')}}`
  t.teardown(async () => {
    const redis = new Redis(SHARED_REDIS)
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })
  return prefix
}

/** A client of the shared Redis, closed when the test ends. */
export function sharedClient (t: Test, options: object = {}): Redis {
  const redis = new Redis(SHARED_REDIS, options)
  t.teardown(() => redis.disconnect())
  return redis
}

/** A store on the shared Redis with its own prefix (unless given), closed when the test ends. */
export function sharedStore (t: Test, options: RedisStoreSettings = {}): RedisStore {
  const store = new RedisStore({ connection: SHARED_REDIS, prefix: uniquePrefix(t), ...options })
  t.teardown(() => store.close())
  return store
}

export interface RedisServer {
  port: number
  url: string
  /** SIGKILL, and wait for the process to be gone. */
  kill: () => Promise<void>
  /** Start again on the same port (and the same folder, so a persistent server keeps its data). */
  start: () => Promise<void>
}

/**
 * A redis-server of the test's own on a free port, for the faults: without persistence unless `persistent`
 * (then an append-only file synced on every write, in a folder of its own). Stopped when the test ends.
 */
export async function redisServer (t: Test, { persistent = false } = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'fastify-event-stream-redis-'))
  let child: ChildProcess | undefined
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--enable-debug-command', 'yes',
    ...(persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'])]
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async kill () {
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    },
    async start () {
      child = spawn('redis-server', args, { stdio: 'ignore' })
      const probe = new Redis(server.url, { lazyConnect: true, retryStrategy: () => 20, maxRetriesPerRequest: null })
      probe.on('error', () => {})
      await probe.connect().catch(() => {})
      await probe.ping()
      probe.disconnect()
    }
  }
  t.teardown(async () => {
    await server.kill()
    await rm(dir, { recursive: true, force: true })
  })
  await server.start()
  return server
}

/** Polls until `check` holds. */
export async function until (check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** An app whose GET /events?topics=a,b subscribes the stream to the hub, listening on a free loopback port. */
export async function hubServer (t: Test, store: EventStore, options: { log?: object } = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({ logger: options.log ?? false, forceCloseConnections: true })
  await app.register(fastifyEventStream, { heartbeat: false, hub: { store } })
  app.get<{ Querystring: { topics?: string } }>('/events', (request, reply) => {
    app.eventHub.subscribe(reply.sse(), (request.query.topics ?? 'a').split(','))
  })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
}

export interface SseClient {
  events: ParsedEvent[]
  /** The Last-Event-ID this client would reconnect with. */
  lastEventId: () => string
  /** Resolves once `count` events arrived. */
  received: (count: number) => Promise<void>
  /** Resolves when the server ended the response. */
  ended: Promise<void>
  close: () => void
}

/** A real HTTP client on its own connection that parses the stream as EventSource does (a POST starts a run, say). */
export async function sseClient (t: Test, url: string, lastEventId?: string, method = 'GET'): Promise<SseClient> {
  const request = http.request(url, { method, agent: false, headers: lastEventId === undefined ? {} : { 'last-event-id': lastEventId } })
  request.end()
  const [response] = await once(request, 'response') as [http.IncomingMessage]
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser(event => events.push(event))
  response.setEncoding('utf8')
  response.on('data', (chunk: string) => parser.feed(chunk))
  const ended = new Promise<void>(resolve => { response.on('close', () => resolve()) })
  t.teardown(() => response.destroy())
  return {
    events,
    lastEventId: () => parser.lastEventId,
    received: count => until(() => events.length >= count, `${count} events (have ${events.length})`),
    ended,
    close: () => response.destroy()
  }
}
