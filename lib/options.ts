import type { AdmissionOptions, Refusal } from './admission.js'
import { resolveCompression, type CompressionOptions, type ResolvedCompression } from './compress.js'
import {
  DEFAULT_HEARTBEAT_MS, DEFAULT_HISTORY_SIZE, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_RUNS, DEFAULT_RECONNECT_WINDOW, DEFAULT_RUN_LEASE_MS,
  DEFAULT_PRESENCE_TTL_MS, DEFAULT_RUN_MAX_BYTES, DEFAULT_RUN_TTL_MS, RESYNC_EVENT
} from './constants.js'
import { FST_SSE_INVALID_OPTION } from './errors.js'
import { MemoryRunStore } from './runs/memory.js'
import { checkEventSchemas, type EventSchemas } from './schema-events.js'
import type { RunStore } from './runs/store.js'
import { MemoryStore } from './stores/memory.js'
import { positiveInteger, type EventStore } from './stores/store.js'

export interface HubOptions {
  /** Where the history lives and how events travel (default: a MemoryStore with the two options below). */
  store?: EventStore
  /**
   * Events kept per topic by the in-memory store (default 1000). Also the number of live events that may wait
   * for one subscriber while its replay is written, past which it is cut off as too slow.
   */
  historySize?: number
  /** Milliseconds the in-memory store keeps an event (default 5 minutes). */
  historyAge?: number
  /** The event type of the in-band message that tells a client to resynchronise (default 'resync'). */
  resyncEvent?: string
  /**
   * The hub's events, declared once: one JSON schema per event name (TypeBox or plain JSON Schema). `send()`
   * serializes each payload with its event's schema, compiled by the app's serializer compiler (fields the schema
   * does not declare are left out), and sends no other event; `publish()` still takes any string.
   */
  events?: Readonly<Record<string, unknown>>
  /** Who is on a topic (subscribers that carry a `presence`): how long entries live and whether joins are announced. */
  presence?: PresenceOptions
}

export interface PresenceOptions {
  /**
   * Milliseconds an instance's entries live in a shared store without renewal (default 30000; renewed every third of
   * it): an instance that dies (kill -9) drops out of presence within about this long.
   */
  ttl?: number
  /** Publish a `join` and a `leave` event (data: `{ id, info }`) on the topic as a listed member comes and goes (default false). */
  announce?: boolean
}

export interface RunsOptions {
  /**
   * Where runs live (default: the hub store's run store when it has one, as the Redis store does, so that runs span
   * the same instances as topics; else in memory).
   */
  store?: RunStore
  /** Milliseconds a run is kept after its end, for readers that come back (default 10 minutes). */
  ttl?: number
  /**
   * Milliseconds an owner's claim holds without renewal (default 10000; renewed every third of it): an instance that
   * dies leaves its runs' readers a final `interrupted` event within about this long.
   */
  lease?: number
  /** Bytes of frames one run may store (default 4 MiB): past it the run ends with reason `overflow`. */
  maxBytes?: number
  /** Runs whose source may run on this instance at once (default 1000): past it start() throws FST_SSE_RUN_LIMIT. */
  maxRuns?: number
}

export interface FastifyEventStreamOptions {
  /** Milliseconds between keep-alive comments on an idle stream (default 15000); false turns them off. */
  heartbeat?: number | false
  /** Per-stream bound on bytes waiting for a slow client, queue plus socket buffer (default 1 MiB). */
  maxBufferedBytes?: number
  /** Reconnection hint in milliseconds, written as `retry:` when a stream opens. */
  retry?: number
  /**
   * When the server ends streams itself (on shutdown, or at maxStreamAge), each gets a `retry:` hint drawn at random
   * from this window of milliseconds, so that their clients come back spread over it instead of as one wave
   * (default [1000, 10000]); false sends no hint.
   */
  reconnectWindow?: readonly [min: number, max: number] | false
  /**
   * Milliseconds after which a stream is ended (with a reconnect hint), so that connections rebalance across
   * instances and credentials are checked again; off by default.
   */
  maxStreamAge?: number | false
  /** Each stream's age limit is maxStreamAge less a random share of this many ms (default a tenth of maxStreamAge). */
  maxStreamAgeJitter?: number
  /**
   * A query parameter that carries the last event id when the Last-Event-ID header does not (the header wins): the
   * first connection after a page load, since EventSource cannot set headers. Off by default.
   */
  lastEventIdQuery?: string | false
  /** The broadcast hub (`fastify.eventHub`): its store and history. */
  hub?: HubOptions
  /**
   * Compresses streams for clients that accept gzip or deflate, each write flushed at once (off by default; a
   * route's `reply.sse(status, { compression })` overrides it). Do not compress a stream that carries secrets next
   * to text an attacker chooses (BREACH): see the README.
   */
  compression?: boolean | CompressionOptions
  /** Runs (`fastify.eventRuns`): output that outlives its connection. */
  runs?: RunsOptions
  /** Admission control (`fastify.eventStreamAdmission`): caps on open streams, and refusal under pressure. */
  admission?: AdmissionOptions
}

/** Per-stream options: the second argument of `reply.sse()`. */
export interface StreamOptions {
  /** Compression for this stream, over the plugin's `compression` option. */
  compression?: boolean | CompressionOptions
  /** How this route answers a stream that admission control refuses, over the plugin's `admission.refusal`. */
  refusal?: Refusal
}

export interface ResolvedOptions {
  heartbeat: number | false
  maxBufferedBytes: number
  retry: number | undefined
  reconnectWindow: readonly [number, number] | false
  maxStreamAge: { age: number, jitter: number } | false
  lastEventIdQuery: string | false
  hub: { store: EventStore, maxPending: number, resyncEvent: string, events: EventSchemas | undefined, presence: { ttl: number, announce: boolean } }
  compression: ResolvedCompression | undefined
  runs: { store: RunStore, ttl: number, lease: number, maxBytes: number, maxRuns: number }
}

/** Validates and defaults the options once, at registration. */
export function resolveOptions (options: FastifyEventStreamOptions): ResolvedOptions {
  const heartbeat = options.heartbeat ?? DEFAULT_HEARTBEAT_MS
  if (heartbeat !== false && !(isPositiveInteger(heartbeat) && heartbeat <= MAX_TIMER_MS)) {
    throw new FST_SSE_INVALID_OPTION('heartbeat', `expected an integer of milliseconds in 1-${MAX_TIMER_MS} or false, got ${String(heartbeat)}`)
  }
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
  if (!isPositiveInteger(maxBufferedBytes)) {
    throw new FST_SSE_INVALID_OPTION('maxBufferedBytes', `expected a positive integer of bytes, got ${String(maxBufferedBytes)}`)
  }
  const retry = options.retry
  if (retry !== undefined && !(typeof retry === 'number' && Number.isFinite(retry) && retry >= 0)) {
    throw new FST_SSE_INVALID_OPTION('retry', `expected a non-negative number of milliseconds, got ${String(retry)}`)
  }
  const hub = resolveHubOptions(options.hub ?? {})
  return {
    heartbeat,
    maxBufferedBytes,
    retry,
    reconnectWindow: resolveReconnectWindow(options.reconnectWindow ?? DEFAULT_RECONNECT_WINDOW),
    maxStreamAge: resolveMaxStreamAge(options.maxStreamAge ?? false, options.maxStreamAgeJitter),
    lastEventIdQuery: resolveLastEventIdQuery(options.lastEventIdQuery ?? false),
    hub,
    compression: resolveCompression(options.compression),
    runs: resolveRunsOptions(options.runs ?? {}, hub.store)
  }
}

function resolveReconnectWindow (window: unknown): ResolvedOptions['reconnectWindow'] {
  if (window === false) return false
  if (!Array.isArray(window) || window.length !== 2 || !window.every(ms => Number.isInteger(ms) && ms >= 0 && ms <= MAX_TIMER_MS) ||
    window[0] > window[1]) {
    throw new FST_SSE_INVALID_OPTION('reconnectWindow', `expected [min, max] of whole milliseconds with min <= max, or false, got ${JSON.stringify(window)}`)
  }
  return [window[0], window[1]]
}

function resolveMaxStreamAge (age: unknown, jitter: unknown): ResolvedOptions['maxStreamAge'] {
  if (age === false) {
    if (jitter !== undefined) throw new FST_SSE_INVALID_OPTION('maxStreamAgeJitter', 'has no effect without maxStreamAge')
    return false
  }
  if (!(isPositiveInteger(age) && age <= MAX_TIMER_MS)) {
    throw new FST_SSE_INVALID_OPTION('maxStreamAge', `expected an integer of milliseconds in 1-${MAX_TIMER_MS} or false, got ${String(age)}`)
  }
  const spread = jitter ?? Math.floor(age / 10)
  if (!(Number.isInteger(spread) && (spread as number) >= 0 && (spread as number) < age)) {
    throw new FST_SSE_INVALID_OPTION('maxStreamAgeJitter', `expected whole milliseconds below maxStreamAge, got ${String(jitter)}`)
  }
  return { age, jitter: spread as number }
}

function resolveLastEventIdQuery (name: unknown): string | false {
  if (name === false) return false
  if (typeof name !== 'string' || name === '') throw new FST_SSE_INVALID_OPTION('lastEventIdQuery', 'expected the name of a query parameter, or false')
  return name
}

const STORE_METHODS = ['append', 'readAfter', 'listen', 'close'] as const

function resolveHubOptions (options: HubOptions): ResolvedOptions['hub'] {
  const { store, historySize, historyAge } = options
  const resyncEvent = options.resyncEvent ?? RESYNC_EVENT
  if (typeof resyncEvent !== 'string' || resyncEvent === '' || resyncEvent.includes('\n') || resyncEvent.includes('\r')) {
    throw new FST_SSE_INVALID_OPTION('hub.resyncEvent', 'expected a non-empty event type without CR or LF')
  }
  const maxPending = positiveInteger('hub.historySize', historySize ?? DEFAULT_HISTORY_SIZE)
  checkEventSchemas(options.events, 'hub.events')
  const events = options.events as EventSchemas | undefined
  const presence = resolvePresence(options.presence ?? {})
  if (store === undefined) return { store: new MemoryStore({ historySize, historyAge }), maxPending, resyncEvent, events, presence }
  if (STORE_METHODS.some(method => typeof (store as unknown as Record<string, unknown>)[method] !== 'function')) {
    throw new FST_SSE_INVALID_OPTION('hub.store', `expected an object with the methods ${STORE_METHODS.join(', ')}`)
  }
  if (historyAge !== undefined) {
    throw new FST_SSE_INVALID_OPTION('hub.historyAge', 'configures the in-memory store: configure the store you pass instead')
  }
  return { store, maxPending, resyncEvent, events, presence }
}

function resolvePresence (options: PresenceOptions): ResolvedOptions['hub']['presence'] {
  const ttl = positiveInteger('hub.presence.ttl', options.ttl ?? DEFAULT_PRESENCE_TTL_MS)
  if (ttl < 300) throw new FST_SSE_INVALID_OPTION('hub.presence.ttl', `expected at least 300 ms, got ${ttl}`)
  const announce = options.announce ?? false
  if (typeof announce !== 'boolean') throw new FST_SSE_INVALID_OPTION('hub.presence.announce', `expected a boolean, got ${typeof announce}`)
  return { ttl, announce }
}

const RUN_STORE_METHODS = ['claim', 'append', 'renew', 'get', 'read', 'listen', 'listenCancel', 'cancel', 'delete', 'close'] as const

function resolveRunsOptions (options: RunsOptions, hubStore: EventStore): ResolvedOptions['runs'] {
  const { store } = options
  if (store !== undefined && RUN_STORE_METHODS.some(method => typeof (store as unknown as Record<string, unknown>)[method] !== 'function')) {
    throw new FST_SSE_INVALID_OPTION('runs.store', `expected an object with the methods ${RUN_STORE_METHODS.join(', ')}`)
  }
  const lease = positiveInteger('runs.lease', options.lease ?? DEFAULT_RUN_LEASE_MS)
  if (lease < 100) throw new FST_SSE_INVALID_OPTION('runs.lease', `expected at least 100 ms, got ${lease}`)
  return {
    store: store ?? hubStore.runStore?.() ?? new MemoryRunStore(),
    ttl: positiveInteger('runs.ttl', options.ttl ?? DEFAULT_RUN_TTL_MS),
    lease,
    maxBytes: positiveInteger('runs.maxBytes', options.maxBytes ?? DEFAULT_RUN_MAX_BYTES),
    maxRuns: positiveInteger('runs.maxRuns', options.maxRuns ?? DEFAULT_MAX_RUNS)
  }
}

/** setInterval() turns a delay above 2^31-1 ms into 1 ms, so a larger heartbeat would fire constantly. */
const MAX_TIMER_MS = 2 ** 31 - 1

function isPositiveInteger (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0
}
