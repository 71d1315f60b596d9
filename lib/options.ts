import { DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_BUFFERED_BYTES } from './constants.js'
import { FST_SSE_INVALID_OPTION } from './errors.js'

export interface FastifyEventStreamOptions {
  /** Milliseconds between keep-alive comments on an idle stream (default 15000); false turns them off. */
  heartbeat?: number | false
  /** Per-stream bound on bytes waiting for a slow client, queue plus socket buffer (default 1 MiB). */
  maxBufferedBytes?: number
  /** Reconnection hint in milliseconds, written as `retry:` when a stream opens. */
  retry?: number
}

export interface ResolvedOptions {
  heartbeat: number | false
  maxBufferedBytes: number
  retry: number | undefined
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
  return { heartbeat, maxBufferedBytes, retry }
}

/** setInterval() turns a delay above 2^31-1 ms into 1 ms, so a larger heartbeat would fire constantly. */
const MAX_TIMER_MS = 2 ** 31 - 1

function isPositiveInteger (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0
}
