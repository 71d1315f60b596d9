import { CLOSE_REASONS, streamClose, type CloseReason } from './diagnostics.js'
import { encodeRetry } from './encode.js'
import { kDeadline, kEnd, kHeartbeat, kOpenedAt, type EventStream, type StreamOwner } from './stream.js'

export interface RegistrySettings {
  heartbeat: number | false
  /** The window the reconnect hint of a stream the server ends is drawn from; false for none. */
  reconnectWindow: readonly [number, number] | false
  maxStreamAge: { age: number, jitter: number } | false
}

/**
 * The open streams of one plugin registration: closed together on shutdown, kept alive by one heartbeat timer and
 * ended at their maximum age by one sweep timer, both running only while a stream is open.
 */
export class StreamRegistry implements StreamOwner {
  readonly #streams = new Set<EventStream<any, any>>()
  readonly #settings: RegistrySettings
  readonly #onDelete: (stream: EventStream<any, any>) => void
  #timer: NodeJS.Timeout | undefined
  #ageTimer: NodeJS.Timeout | undefined
  #cutOff = 0
  #endedByAge = 0
  #endedByShutdown = 0
  #opened = 0
  readonly #closed = Object.fromEntries(CLOSE_REASONS.map(reason => [reason, 0])) as Record<CloseReason, number>
  /** Frames the streams took and bytes they handed to their sockets: counted by each stream as it writes. */
  readonly sent = { messages: 0, bytes: 0 }

  constructor (settings: RegistrySettings, onDelete: (stream: EventStream<any, any>) => void) {
    this.#settings = settings
    this.#onDelete = onDelete
  }

  /** How many streams were cut off because their client was too slow. */
  get cutOff (): number {
    return this.#cutOff
  }

  /** How many streams were ended at maxStreamAge. */
  get endedByAge (): number {
    return this.#endedByAge
  }

  /** How many streams were ended by the server's shutdown. */
  get endedByShutdown (): number {
    return this.#endedByShutdown
  }

  get size (): number {
    return this.#streams.size
  }

  /** Streams opened since the start. */
  get opened (): number {
    return this.#opened
  }

  /** Streams ended since the start, by reason. */
  get closed (): Readonly<Record<CloseReason, number>> {
    return this.#closed
  }

  add (stream: EventStream<any, any>): void {
    this.#streams.add(stream)
    this.#opened++
    const { heartbeat, maxStreamAge } = this.#settings
    if (this.#timer === undefined && heartbeat !== false) this.#timer = setInterval(this.#beat, heartbeat).unref()
    if (maxStreamAge === false) return
    const now = Date.now()
    stream[kOpenedAt] = now
    stream[kDeadline] = now + maxStreamAge.age - Math.random() * maxStreamAge.jitter
    this.#ageTimer ??= setInterval(this.#expire, sweepInterval(maxStreamAge.age)).unref()
  }

  delete (stream: EventStream<any, any>, reason: CloseReason): void {
    this.#closed[reason]++
    if (streamClose.hasSubscribers) streamClose.publish({ stream, reason })
    this.#streams.delete(stream)
    if (this.#streams.size === 0) this.#stopTimers()
    this.#onDelete(stream)
  }

  slow (): void {
    this.#cutOff++
  }

  /** Ends every open stream, each with its reconnect hint; resolves once all of them closed. */
  async closeAll (): Promise<void> {
    this.#endedByShutdown += this.#streams.size
    await Promise.all(Array.from(this.#streams, stream => stream[kEnd](this.#hint(), true)))
    this.#stopTimers()
  }

  readonly #beat = (): void => {
    for (const stream of this.#streams) stream[kHeartbeat]()
  }

  /** Ends the streams past their age. Streams are held in the order they opened: the walk stops at the young ones. */
  readonly #expire = (): void => {
    const { age, jitter } = this.#settings.maxStreamAge as { age: number, jitter: number }
    const now = Date.now()
    for (const stream of this.#streams) {
      if (stream[kOpenedAt] + age - jitter > now) break
      if (stream[kDeadline] > now) continue
      this.#endedByAge++
      stream[kEnd](this.#hint(), false)
    }
  }

  /** A retry frame with a delay drawn from the reconnect window, so that clients do not all come back at once. */
  #hint (): Uint8Array | undefined {
    const window = this.#settings.reconnectWindow
    if (window === false) return undefined
    return encodeRetry(window[0] + Math.floor(Math.random() * (window[1] - window[0] + 1)))
  }

  #stopTimers (): void {
    clearInterval(this.#timer)
    clearInterval(this.#ageTimer)
    this.#timer = undefined
    this.#ageTimer = undefined
  }
}

/** How often ages are checked: a twentieth of the age, between 10 ms and 1 s. */
function sweepInterval (age: number): number {
  return Math.min(1000, Math.max(10, Math.floor(age / 20)))
}
