import type { FastifyBaseLogger } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { stopSource } from '../source.js'
import { finalFrame, itemFrame, runEventId } from './frames.js'
import type { RunEnd, RunProtocol, RunStore, RunWriteResult } from './store.js'

export interface OwnerSettings {
  readonly store: RunStore
  readonly lease: number
  readonly ttl: number
  readonly maxBytes: number
  readonly log: FastifyBaseLogger
}

/** Frames waiting for the store past this many bytes hold the source back until the store took them. */
const HELD_BYTES = 256 * 1024
/** Frames one store write carries at most (a Lua script's arguments are bounded). */
const MAX_BATCH_FRAMES = 500
const ENDED = Symbol('ended')
const noop = (): void => {}

/**
 * The instance that won a run's claim: pulls the source and appends what it yields to the store, a tick's frames in
 * one write, in order; ends the run with its final frame. Stops the source when the run is cancelled (from any
 * instance), when it crosses its byte cap, when it loses the run, and when the server shuts down.
 */
export class RunOwner {
  readonly key: string
  readonly id: string
  readonly protocol: RunProtocol
  /** Resolves with how the run ended, once its final frame is stored (set by whoever drives the run). */
  done: Promise<RunEnd | 'lost'> = Promise.resolve('lost')
  readonly #settings: OwnerSettings
  readonly #controller = new AbortController()
  /** Frames made so far, the batch included: the next frame's index is #count + 1. */
  #count = 0
  #bytes = 0
  #batch: Buffer[] = []
  #batchBytes = 0
  #scheduled = false
  /** The store's writes, one after the other. */
  #writing: Promise<void> = Promise.resolve()
  /** Why the source must stop, when something other than the source decided it. */
  #stopReason: RunEnd | 'lost' | undefined
  /** When the store last took a write or renewal: past the lease without one, the run is no longer ours. */
  #lastContact = Date.now()

  constructor (key: string, id: string, protocol: RunProtocol, settings: OwnerSettings) {
    this.key = key
    this.id = id
    this.protocol = protocol
    this.#settings = settings
  }

  /** Aborts when the source must stop: hand it to the model call, so that a cancel aborts it. */
  get signal (): AbortSignal {
    return this.#controller.signal
  }

  /** Runs the source to its end; resolves with how the run ended ('lost' when another instance ended it). */
  async run (source: unknown, iterator: AsyncIterator<unknown> | Iterator<unknown>, onError: ((err: unknown) => unknown) | undefined): Promise<RunEnd | 'lost'> {
    let end: RunEnd | undefined
    let failed: unknown
    const stopped = new Promise<typeof ENDED>(resolve => this.signal.addEventListener('abort', () => resolve(ENDED), { once: true }))
    try {
      while (end === undefined && this.#stopReason === undefined) {
        const next = Promise.resolve(iterator.next())
        next.catch(noop) // handled by the race, or comes after the run stopped
        const result = await Promise.race([next, stopped])
        if (result === ENDED) break
        if (result.done === true) end = 'done'
        else end = this.#add(result.value)
        if (this.#batchBytes > HELD_BYTES) await this.#writing
      }
    } catch (err) {
      failed = err
      end = 'failed'
    } finally {
      if (end !== 'done') stopSource(source, iterator, err => this.#settings.log.error({ err, run: this.key }, 'run source failed to stop'))
    }
    if (end === 'failed') this.#fail(failed, onError)
    // The loop ends with an end of its own, or because something set a stop reason.
    return await this.#end(this.#stopReason ?? end as RunEnd)
  }

  /** Stops the source; the run ends with this reason (cancelled, interrupted by a shutdown). */
  stop (reason: RunEnd): void {
    this.#stopReason ??= reason
    this.#controller.abort()
  }

  /** Renewal's answer for this run. */
  renewed (result: RunWriteResult): void {
    if (result === 'ok') this.#lastContact = Date.now()
    else this.#answer(result)
  }

  /** Past the lease without a word from the store, another instance may have declared the run interrupted. */
  get expired (): boolean {
    return Date.now() - this.#lastContact > this.#settings.lease
  }

  /** One item as a frame in the batch; 'overflow' instead when it would cross the byte cap (nothing half-written). */
  #add (item: unknown): RunEnd | undefined {
    const frame = itemFrame(item, this.protocol, runEventId(this.id, this.#count + 1))
    if (this.#bytes + frame.length > this.#settings.maxBytes) return 'overflow'
    this.#push(frame)
    // A source that yields a great many frames in one tick still goes to the store in writes of bounded size.
    if (this.#batch.length >= MAX_BATCH_FRAMES) this.#flush()
    else if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(this.#flush)
    }
    return undefined
  }

  #push (frame: Buffer): void {
    this.#count++
    this.#bytes += frame.length
    this.#batch.push(frame)
    this.#batchBytes += frame.length
  }

  #fail (err: unknown, onError: ((err: unknown) => unknown) | undefined): void {
    this.#settings.log.error({ err, run: this.key }, 'run source failed; ending the run')
    try {
      const item = onError?.(err)
      if (item !== undefined) this.#push(itemFrame(item, this.protocol, runEventId(this.id, this.#count + 1)))
    } catch (failure) {
      this.#settings.log.error({ err: failure, run: this.key }, 'run onError failed')
    }
  }

  /** The final frame goes with whatever waits; resolves once the store has it (or the run was lost). */
  async #end (end: RunEnd | 'lost'): Promise<RunEnd | 'lost'> {
    if (end !== 'lost') this.#push(finalFrame(this.protocol, end, runEventId(this.id, this.#count + 1)))
    this.#flush(end === 'lost' ? undefined : end)
    await this.#writing
    this.#controller.abort()
    return this.#stopReason === 'lost' ? 'lost' : end
  }

  readonly #flush = (end?: RunEnd): void => {
    this.#scheduled = false
    if (this.#batch.length === 0 || this.#stopReason === 'lost') return
    const frames = this.#batch
    const first = this.#count - frames.length + 1
    this.#batch = []
    this.#batchBytes = 0
    this.#writing = this.#writing.then(() => this.#append(first, frames, end))
  }

  /** One append, retried while the store fails, for up to a lease: then the run is lost (others may have ended it). */
  async #append (first: number, frames: Buffer[], end: RunEnd | undefined): Promise<void> {
    const since = Date.now()
    for (let wait = 50; this.#stopReason !== 'lost'; wait = Math.min(wait * 2, 1000)) {
      try {
        const result = await this.#settings.store.append(this.key, this.id, first, frames, end, this.#settings.lease, this.#settings.ttl)
        this.#lastContact = Date.now()
        this.#answer(result)
        return
      } catch (err) {
        if (Date.now() - since >= this.#settings.lease) {
          this.#settings.log.error({ err, run: this.key }, 'run store unavailable for longer than the lease; giving the run up')
          this.#answer('lost')
          return
        }
        this.#settings.log.warn({ err, run: this.key }, 'run store write failed; retrying')
        await sleep(wait)
      }
    }
  }

  #answer (result: RunWriteResult): void {
    if (result === 'cancelled') this.stop('cancelled')
    else if (result === 'lost') {
      this.#stopReason = 'lost'
      this.#controller.abort()
    }
  }
}
