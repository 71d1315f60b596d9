import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { streamRefused } from './diagnostics.js'
import { encodeRetry } from './encode.js'
import { FST_SSE_INVALID_OPTION, FST_SSE_REFUSED } from './errors.js'
import { streamHeaders } from './open.js'
import { EventStream, kFinish, type StreamOwner } from './stream.js'

/**
 * How a refused stream is answered. `status`: 503 with Retry-After, which `fetch`-based clients (this plugin's, the
 * AI SDK's) wait out and retry; a native EventSource gives up for good on any status but 200. `retry`: 200, an event
 * stream holding only a `retry:` hint, closed at once, which an EventSource follows by reconnecting after the hint.
 */
export type Refusal = 'status' | 'retry'

/** Why a stream was refused: the instance's cap, the client key's cap, or event-loop pressure. */
export type RefusalReason = 'streams' | 'key' | 'pressure'

export interface AdmissionOptions {
  /** Open streams this instance takes at most (default unlimited): past it new streams are refused. */
  maxStreams?: number | false
  /** Open streams one client key takes at most (default unlimited): a user's tabs, or an IP's connections. */
  maxStreamsPerKey?: number | false
  /** The client key of a request, for maxStreamsPerKey (default `request.ip`); undefined counts the request under none. */
  key?: (request: FastifyRequest) => string | undefined
  /** How a refused stream is answered (default 'status'); `reply.sse(status, { refusal })` overrides it per route. */
  refusal?: Refusal
  /**
   * The window (ms) that the delay a refused client is told to wait is drawn from, so that refused clients do not
   * come back as one wave (default: the plugin's reconnectWindow, else [1000, 10000]).
   */
  retryWindow?: readonly [min: number, max: number]
  /** Refuse new streams while `@fastify/under-pressure` reports pressure (default true; open streams stay). */
  underPressure?: boolean
}

export interface AdmissionStats {
  /** Streams refused since the start, by reason. */
  refused: Record<RefusalReason, number>
  /** Client keys holding at least one open stream (counted while maxStreamsPerKey is on). */
  keys: number
}

/** A stream's slot: the key it counts under, released when the stream ends. */
const kKey = Symbol('fastify-event-stream.admission-key')
type Admitted = EventStream<any, any> & { [kKey]?: string }

/** The owner of a refused stream, which was never counted anywhere. */
const NOBODY: StreamOwner = { delete: nothing, slow: nothing }

/**
 * Admission control: which new streams an instance takes. Checked in `reply.sse()` before the socket is hijacked;
 * the caps can be changed while the server runs (`fastify.eventStreamAdmission.maxStreams = 5000`).
 */
export class StreamAdmission {
  #maxStreams: number | false
  #maxStreamsPerKey: number | false
  readonly #keyOf: (request: FastifyRequest) => string | undefined
  readonly #perKey = new Map<string, number>()
  readonly #open: () => number
  readonly #refused: Record<RefusalReason, number> = { streams: 0, key: 0, pressure: 0 }
  readonly refusal: Refusal
  readonly #window: readonly [number, number]
  readonly #underPressure: boolean

  constructor (options: AdmissionOptions, reconnectWindow: readonly [number, number] | false, open: () => number) {
    this.#maxStreams = cap('admission.maxStreams', options.maxStreams ?? false)
    this.#maxStreamsPerKey = cap('admission.maxStreamsPerKey', options.maxStreamsPerKey ?? false)
    if (options.key !== undefined && typeof options.key !== 'function') throw new FST_SSE_INVALID_OPTION('admission.key', 'expected a function of the request')
    this.#keyOf = options.key ?? ipOf
    const refusal = options.refusal ?? 'status'
    this.refusal = checkRefusal('admission.refusal', refusal)
    this.#window = retryWindow(options.retryWindow ?? (reconnectWindow === false ? DEFAULT_WINDOW : reconnectWindow))
    if (options.underPressure !== undefined && typeof options.underPressure !== 'boolean') {
      throw new FST_SSE_INVALID_OPTION('admission.underPressure', 'expected a boolean')
    }
    this.#underPressure = options.underPressure ?? true
    this.#open = open
  }

  get maxStreams (): number | false {
    return this.#maxStreams
  }

  set maxStreams (value: number | false) {
    this.#maxStreams = cap('maxStreams', value)
  }

  get maxStreamsPerKey (): number | false {
    return this.#maxStreamsPerKey
  }

  /** Streams opened while it was off do not count against a cap set later. */
  set maxStreamsPerKey (value: number | false) {
    this.#maxStreamsPerKey = cap('maxStreamsPerKey', value)
  }

  stats (): AdmissionStats {
    return { refused: { ...this.#refused }, keys: this.#perKey.size }
  }

  /** Why the request's stream is refused (counted), else undefined and the key it would count under. */
  check (request: FastifyRequest, server: FastifyInstance): { reason: RefusalReason | undefined, key: string | undefined } {
    if (this.#maxStreams !== false && this.#open() >= this.#maxStreams) return this.#refuse('streams')
    if (this.#underPressure && (server as { isUnderPressure?: () => boolean }).isUnderPressure?.() === true) return this.#refuse('pressure')
    if (this.#maxStreamsPerKey === false) return ADMITTED
    const key = this.#keyOf(request)
    if (key === undefined) return ADMITTED
    if ((this.#perKey.get(key) ?? 0) >= this.#maxStreamsPerKey) return this.#refuse('key')
    return { reason: undefined, key }
  }

  /** Counts an opened stream under its key until it ends (one that ended as it opened holds nothing). */
  hold (stream: EventStream<any, any>, key: string | undefined): void {
    if (key === undefined || stream.closed) return
    ;(stream as Admitted)[kKey] = key
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1)
  }

  /** The stream ended: its key's slot is free. */
  release (stream: EventStream<any, any>): void {
    const key = (stream as Admitted)[kKey]
    if (key === undefined) return
    const held = this.#perKey.get(key) as number
    if (held <= 1) this.#perKey.delete(key)
    else this.#perKey.set(key, held - 1)
  }

  /** Answers a refused request (the way `refusal` says) and returns a stream that is already closed. */
  refuse (reply: FastifyReply, reason: RefusalReason, refusal: Refusal, settings: { maxBufferedBytes: number }): EventStream<any, any> {
    const delay = this.#window[0] + Math.floor(Math.random() * (this.#window[1] - this.#window[0] + 1))
    reply.log.debug({ reason }, 'event stream refused')
    if (streamRefused.hasSubscribers) streamRefused.publish({ request: reply.request, reason })
    const stream = new EventStream(reply.raw as never, undefined, { maxBufferedBytes: settings.maxBufferedBytes, log: reply.log, owner: NOBODY, sent: { messages: 0, bytes: 0 } })
    if (refusal === 'status') {
      // A plain response, not an error: a refusal storm is not thousands of error logs, nor thousands of errors made
      // and serialized; the body of each reason is made once.
      reply.code(503).header('retry-after', String(Math.ceil(delay / 1000))).type(JSON_TYPE).send(BODIES[reason])
    } else {
      reply.hijack()
      const raw = reply.raw as unknown as { writeHead (status: number, headers: Record<string, unknown>): void, end (chunk: Uint8Array): void }
      raw.writeHead(200, streamHeaders(reply, reply.raw))
      raw.end(encodeRetry(delay))
    }
    stream[kFinish]()
    return stream
  }

  #refuse (reason: RefusalReason): { reason: RefusalReason, key: undefined } {
    this.#refused[reason]++
    return { reason, key: undefined }
  }
}

const ADMITTED = Object.freeze({ reason: undefined, key: undefined })
const DEFAULT_WINDOW: readonly [number, number] = [1000, 10_000]

const REASONS: Record<RefusalReason, string> = {
  streams: 'this instance holds its maximum of open streams',
  key: 'this client holds its maximum of open streams',
  pressure: 'the server is under pressure'
}

/** The 503 body of each reason, made once: what Fastify's error handler would send for a FST_SSE_REFUSED. */
const BODIES = Object.fromEntries(Object.entries(REASONS).map(([reason, text]) => {
  const error = new FST_SSE_REFUSED(text)
  return [reason, JSON.stringify({ statusCode: 503, code: error.code, error: 'Service Unavailable', message: error.message })]
})) as Record<RefusalReason, string>
const JSON_TYPE = 'application/json; charset=utf-8'

function nothing (): void {}

function ipOf (request: FastifyRequest): string {
  return request.ip
}

function cap (name: string, value: unknown): number | false {
  if (value === false || (typeof value === 'number' && Number.isInteger(value) && value >= 0)) return value
  throw new FST_SSE_INVALID_OPTION(name, `expected a whole number of streams or false, got ${String(value)}`)
}

export function checkRefusal (name: string, value: unknown): Refusal {
  if (value === 'status' || value === 'retry') return value
  throw new FST_SSE_INVALID_OPTION(name, `expected 'status' or 'retry', got ${String(value)}`)
}

function retryWindow (window: unknown): readonly [number, number] {
  if (!Array.isArray(window) || window.length !== 2 || !window.every(ms => Number.isInteger(ms) && ms >= 0 && ms <= 2 ** 31 - 1) || window[0] > window[1]) {
    throw new FST_SSE_INVALID_OPTION('admission.retryWindow', `expected [min, max] of whole milliseconds with min <= max, got ${JSON.stringify(window)}`)
  }
  return [window[0], window[1]]
}
