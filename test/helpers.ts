import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import fastifyEventStream, { type EventStream, type FastifyEventStreamOptions } from '../index.js'

/** A Fastify app with the plugin registered, closed when the test ends. */
export async function build (t: Test, options: FastifyEventStreamOptions = {}, serverOptions: object = {}): Promise<FastifyInstance> {
  // http2: true selects another overload of Fastify(); the tests use the instance the same way.
  const app = Fastify(serverOptions as FastifyServerOptions)
  await app.register(fastifyEventStream, options)
  t.teardown(() => app.close())
  return app
}

/** Listens on a free loopback port; returns the base URL. */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return `http://127.0.0.1:${address.port}`
}

/** A loopback port nothing listens on right now (for a server the test starts: redis-server, nginx). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** A GET on its own connection; resolves as soon as the status and headers arrive. */
export async function get (url: string, headers: http.OutgoingHttpHeaders = {}): Promise<http.IncomingMessage> {
  const request = http.get(url, { agent: false, headers })
  const [response] = await once(request, 'response') as [http.IncomingMessage]
  return response
}

/** Reads a response to its end as UTF-8 text. */
export async function readAll (response: NodeJS.ReadableStream): Promise<string> {
  let body = ''
  for await (const chunk of response) body += chunk.toString()
  return body
}

/**
 * Reads until the text received so far contains `marker`; returns all of it and leaves the stream paused and open
 * (leaving a for-await loop early would destroy it).
 */
export async function readUntil (stream: NodeJS.ReadableStream, marker: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    let body = ''
    const onData = (chunk: Buffer): void => {
      body += chunk.toString()
      if (!body.includes(marker)) return
      stop()
      resolve(body)
    }
    const onEnd = (): void => {
      stop()
      reject(new Error(`stream ended before ${JSON.stringify(marker)}; got ${JSON.stringify(body)}`))
    }
    const stop = (): void => {
      stream.pause()
      stream.off('data', onData)
      stream.off('end', onEnd)
    }
    stream.on('data', onData)
    stream.on('end', onEnd)
    // A stream paused by an earlier call does not flow again just because a 'data' listener was added.
    stream.resume()
  })
}

export interface LogLine {
  level: number
  msg: string
  reqId?: string
  err?: { message?: string, code?: string }
  [key: string]: unknown
}

/** Logger options that collect every line the app logs, parsed. */
export function captureLogs (level = 'info'): { logger: { level: string, stream: Writable }, lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  return { logger: { level, stream }, lines }
}

/** Resolves on the next macrotask turn, after pending I/O callbacks. */
export const tick = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

/** Polls until `check` holds; for state that no event announces (such as a log line). */
export async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/** Records the interval timers created and cleared while a test runs (the heartbeat is one). */
/**
 * A stream opened by a handler that awaited something first, while its client left: the route's handler waits for
 * the client to go, then calls reply.sse(). Resolves with that stream once it opened.
 */
export async function openAfterClientLeft (app: FastifyInstance, path: string): Promise<EventStream> {
  let left!: () => void
  const gone = new Promise<void>(resolve => { left = resolve })
  let handling = false
  const opened = new Promise<EventStream>(resolve => {
    app.get(path, async (request, reply) => {
      handling = true
      request.raw.on('close', left)
      await gone
      resolve(reply.sse())
    })
  })
  const request = http.get(`${await listen(app)}${path}`, { agent: false })
  request.on('error', () => {})
  await until(() => handling, 'the handler')
  request.destroy()
  return await opened
}

export function trackIntervals (t: Test): { delays: unknown[], live: () => number } {
  const { setInterval: set, clearInterval: clear } = globalThis
  const delays: unknown[] = []
  const live = new Set<unknown>()
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    delays.push(args[1])
    const timer = set(...args)
    live.add(timer)
    return timer
  }) as typeof setInterval
  globalThis.clearInterval = ((timer: Parameters<typeof clearInterval>[0]) => {
    live.delete(timer)
    clear(timer)
  }) as typeof clearInterval
  t.teardown(() => Object.assign(globalThis, { setInterval: set, clearInterval: clear }))
  return { delays, live: () => live.size }
}

/** True when the promise has not settled after pending I/O ran: the write is waiting for the socket. */
export async function isPending (promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(() => { settled = true }, () => { settled = true })
  await tick()
  return !settled
}

/** Writes 64 KiB events to a client that does not read until one of them has to wait; returns that one. */
export async function fillSocket (stream: EventStream): Promise<{ waiting: Promise<boolean>, sent: number }> {
  const chunk = 'x'.repeat(64 * 1024)
  for (let sent = 1; ; sent++) {
    const write = stream.message(chunk, { id: sent })
    if (await isPending(write)) return { waiting: write, sent }
  }
}

/** The demo that `npm start` runs, from the build that `npm test` makes first. */
const LIVE_DEMO = fileURLToPath(new URL('../dist/examples/live.js', import.meta.url))

/**
 * Starts the demo on a free loopback port with a news tick every `tickMs` (and `env`, REDIS_URL say); killed when the
 * test ends. Resolves with the URL of the first instance.
 */
export async function startDemo (t: Test, tickMs: number, env: Record<string, string> = {}): Promise<{ child: ChildProcessWithoutNullStreams, url: string }> {
  const child = spawn(process.execPath, [LIVE_DEMO], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', TICK_MS: String(tickMs), ...env } })
  t.teardown(() => child.kill())
  let log = ''
  const url = await new Promise<string>(resolve => {
    child.stdout.on('data', chunk => {
      log += chunk
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log)
      if (match !== null) resolve(match[1])
    })
  })
  return { child, url }
}
