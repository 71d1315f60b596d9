import { DEFAULT_HEARTBEAT_MS, DEFAULT_HISTORY_SIZE, DEFAULT_MAX_BUFFERED_BYTES, RESYNC_EVENT } from './constants.js'
import { FST_SSE_INVALID_OPTION } from './errors.js'
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
}

export interface FastifyEventStreamOptions {
  /** Milliseconds between keep-alive comments on an idle stream (default 15000); false turns them off. */
  heartbeat?: number | false
  /** Per-stream bound on bytes waiting for a slow client, queue plus socket buffer (default 1 MiB). */
  maxBufferedBytes?: number
  /** Reconnection hint in milliseconds, written as `retry:` when a stream opens. */
  retry?: number
  /** The broadcast hub (`fastify.eventHub`): its store and history. */
  hub?: HubOptions
}

export interface ResolvedOptions {
  heartbeat: number | false
  maxBufferedBytes: number
  retry: number | undefined
  hub: { store: EventStore, maxPending: number, resyncEvent: string }
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
  return { heartbeat, maxBufferedBytes, retry, hub: resolveHubOptions(options.hub ?? {}) }
}

const STORE_METHODS = ['append', 'readAfter', 'listen', 'close'] as const

function resolveHubOptions (options: HubOptions): ResolvedOptions['hub'] {
  const { store, historySize, historyAge } = options
  const resyncEvent = options.resyncEvent ?? RESYNC_EVENT
  if (typeof resyncEvent !== 'string' || resyncEvent === '' || resyncEvent.includes('\n') || resyncEvent.includes('\r')) {
    throw new FST_SSE_INVALID_OPTION('hub.resyncEvent', 'expected a non-empty event type without CR or LF')
  }
  const maxPending = positiveInteger('hub.historySize', historySize ?? DEFAULT_HISTORY_SIZE)
  if (store === undefined) return { store: new MemoryStore({ historySize, historyAge }), maxPending, resyncEvent }
  if (STORE_METHODS.some(method => typeof (store as unknown as Record<string, unknown>)[method] !== 'function')) {
    throw new FST_SSE_INVALID_OPTION('hub.store', `expected an object with the methods ${STORE_METHODS.join(', ')}`)
  }
  if (historyAge !== undefined) {
    throw new FST_SSE_INVALID_OPTION('hub.historyAge', 'configures the in-memory store: configure the store you pass instead')
  }
  return { store, maxPending, resyncEvent }
}

/** setInterval() turns a delay above 2^31-1 ms into 1 ms, so a larger heartbeat would fire constantly. */
const MAX_TIMER_MS = 2 ** 31 - 1

function isPositiveInteger (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0
}
