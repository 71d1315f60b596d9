import type { FastifyBaseLogger } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { stopSource } from '../source.js'
import { finalFrame, itemFrame, runEventId } from './frames.js'
import type { RunEnd, RunListener, RunProtocol, RunStore, RunWriteResult } from './store.js'

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

/** Owners with frames to write: once the current operation (and its promise jobs) ends, every batch is written. */
const dirty = new Set<RunOwner>()
function flushDirty (): void {
  for (const owner of dirty) owner.flush()
  dirty.clear()
}

/**
 * The instance that won a run's claim: pulls the source and appends what it yields to the store, a tick's frames in
 * one write, one write at a time, in order; ends the run with its final frame. Stops the source when the run is
 * cancelled (from any instance), when it crosses its byte cap, when it loses the run, and when the server shuts down.
 * The source is pulled with callbacks, not an await per item: a token costs a frame and a few calls.
 */
export class RunOwner {
  readonly key: string
  readonly id: string
  readonly protocol: RunProtocol
  /** Resolves with how the run ended, once its final frame is stored (set by whoever drives the run). */
  done: Promise<RunEnd | 'lost'> = Promise.resolve('lost')
  readonly #settings: OwnerSettings
  readonly #controller = new AbortController()
  #source: unknown
  #iterator: AsyncIterator<unknown> | Iterator<unknown> | undefined
  #onError: ((err: unknown) => unknown) | undefined
  #resolve: ((end: RunEnd | 'lost') => void) | undefined
  /** Frames made so far, the batch included: the next frame's index is #count + 1. */
  #count = 0
  #bytes = 0
  #batch: Buffer[] = []
  #batchBytes = 0
  /** A store write is under way; the next waits for it. */
  #writing = false
  /** A next() of the source is pending, or the source waits for the store (held back). */
  #waiting = false
  #held = false
  /** The source is done with: the final frame is in the batch (or the run was lost). */
  #finished = false
  /** How the run ends, once decided. */
  #end: RunEnd | 'lost' | undefined
  /** Why the source must stop, when something other than the source decided it. */
  #stopReason: RunEnd | 'lost' | undefined
  /** When the store last took a write or renewal: past the lease without one, the run is no longer ours. */
  #lastContact = Date.now()
  /** Readers on this instance, told of each write once the store took it (a remote store's round trip saved). */
  readonly #listeners = new Set<RunListener>()
  /** The store answered that the run is no longer this owner's: its readers here must resume from the store. */
  #lost = false

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
  run (source: unknown, iterator: AsyncIterator<unknown> | Iterator<unknown>, onError: ((err: unknown) => unknown) | undefined): Promise<RunEnd | 'lost'> {
    this.#source = source
    this.#iterator = iterator
    this.#onError = onError
    return new Promise(resolve => {
      this.#resolve = resolve
      this.#pull()
    })
  }

  /** Stops the source; the run ends with this reason (cancelled, interrupted by a shutdown). */
  stop (reason: RunEnd): void {
    this.#stopAs(reason)
  }

  /** Renewal's answer for this run. */
  renewed (result: RunWriteResult): void {
    if (result === 'ok') this.#lastContact = Date.now()
    else this.#answer(result)
  }

  /**
   * Tells a reader on this instance of every write from now on, once the store has it, in order; the reader reads
   * what came before from the store. Fails it when the run is no longer this owner's (or as soon as it asks, once so).
   */
  listen (listener: RunListener): () => void {
    if (this.#lost) {
      listener.fail(lostError())
      return noop
    }
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Past the lease without a word from the store, another instance may have declared the run interrupted. */
  get expired (): boolean {
    return Date.now() - this.#lastContact > this.#settings.lease
  }

  /** Items as long as the source hands them over at once; a pending one resumes here when it comes. */
  #pull (): void {
    const iterator = this.#iterator as AsyncIterator<unknown> | Iterator<unknown>
    while (!this.#finished) {
      if (this.#stopReason !== undefined) return this.#finish(undefined, undefined)
      if (this.#batchBytes > HELD_BYTES && this.#writing) {
        this.#held = true
        return
      }
      let result: IteratorResult<unknown> | PromiseLike<IteratorResult<unknown>>
      try {
        result = iterator.next()
      } catch (err) {
        return this.#finish('failed', err)
      }
      if (typeof (result as Partial<PromiseLike<unknown>> | null)?.then === 'function') {
        this.#waiting = true
        ;(result as PromiseLike<IteratorResult<unknown>>).then(this.#onNext, this.#onThrow)
        return
      }
      if (!this.#take(result as IteratorResult<unknown>)) return
    }
  }

  readonly #onNext = (result: IteratorResult<unknown>): void => {
    this.#waiting = false
    if (!this.#finished && this.#take(result)) this.#pull()
  }

  readonly #onThrow = (err: unknown): void => {
    this.#waiting = false
    if (!this.#finished) this.#finish('failed', err)
  }

  /** One result of the source: false once the run ends with it. */
  #take (result: IteratorResult<unknown>): boolean {
    // A hand-written iterator may answer anything: a run fails instead of throwing where nobody catches it.
    if (typeof result !== 'object' || result === null) {
      this.#finish('failed', new TypeError(`the source's iterator answered ${String(result)}, not an iterator result`))
      return false
    }
    if (result.done === true) {
      this.#finish('done', undefined)
      return false
    }
    let frame: Buffer
    try {
      frame = itemFrame(result.value, this.protocol, runEventId(this.id, this.#count + 1))
    } catch (err) {
      this.#finish('failed', err)
      return false
    }
    // Past the byte cap the run ends instead: nothing half-written.
    if (this.#bytes + frame.length > this.#settings.maxBytes) {
      this.#finish('overflow', undefined)
      return false
    }
    this.#push(frame)
    return true
  }

  #push (frame: Buffer): void {
    this.#count++
    this.#bytes += frame.length
    this.#batch.push(frame)
    this.#batchBytes += frame.length
    if (dirty.size === 0) process.nextTick(flushDirty)
    dirty.add(this)
  }

  /** The source is done with: stopped unless it ran out, the final frame batched, the run's promise settled once written. */
  #finish (end: RunEnd | undefined, err: unknown): void {
    // Called once: every caller checks #finished, or (#stopAs) a flag that only an unfinished run has.
    this.#finished = true
    this.#waiting = false
    this.#held = false
    if (end !== 'done') stopSource(this.#source, this.#iterator as Iterator<unknown>, failure => this.#settings.log.error({ err: failure, run: this.key }, 'run source failed to stop'))
    if (end === 'failed') this.#fail(err)
    // A stop reason wins: the loop ends with an end of its own only when nothing else decided.
    this.#end = this.#stopReason ?? end as RunEnd
    if (this.#end !== 'lost') this.#push(finalFrame(this.protocol, this.#end, runEventId(this.id, this.#count + 1)))
    this.#settle()
  }

  #fail (err: unknown): void {
    this.#settings.log.error({ err, run: this.key }, 'run source failed; ending the run')
    try {
      const item = this.#onError?.(err)
      if (item !== undefined) this.#push(itemFrame(item, this.protocol, runEventId(this.id, this.#count + 1)))
    } catch (failure) {
      this.#settings.log.error({ err: failure, run: this.key }, 'run onError failed')
    }
  }

  #stopAs (reason: RunEnd | 'lost'): void {
    this.#stopReason ??= reason
    this.#controller.abort()
    // A source that waits (for its next item, or for the store) is not waited for.
    if (this.#waiting || this.#held) this.#finish(undefined, undefined)
  }

  /** Writes the batch unless a write is under way (its end writes the rest); at most MAX_BATCH_FRAMES at a time. */
  flush (): void {
    if (this.#writing || this.#batch.length === 0 || this.#stopReason === 'lost') return
    const frames = this.#batch.length > MAX_BATCH_FRAMES ? this.#batch.splice(0, MAX_BATCH_FRAMES) : this.#batch
    if (frames === this.#batch) this.#batch = []
    for (const frame of frames) this.#batchBytes -= frame.length
    const first = this.#count - this.#batch.length - frames.length + 1
    // The write that carries the final frame ends the run in the store.
    const end = this.#finished && this.#batch.length === 0 && this.#end !== 'lost' ? this.#end : undefined
    this.#writing = true
    this.#append(first, frames, end).then(this.#written, this.#written)
  }

  readonly #written = (): void => {
    this.#writing = false
    this.flush()
    if (this.#held && !this.#writing) {
      this.#held = false
      this.#pull()
    }
    this.#settle()
  }

  /** Once the source is done with and every frame written (or the run lost), the run's promise resolves. */
  #settle (): void {
    if (!this.#finished || this.#writing || (this.#batch.length > 0 && this.#stopReason !== 'lost')) return
    this.#controller.abort()
    const resolve = this.#resolve
    this.#resolve = undefined
    resolve?.(this.#stopReason === 'lost' ? 'lost' : this.#end as RunEnd)
  }

  /** One append, retried while the store fails, for up to a lease: then the run is lost (others may have ended it). */
  async #append (first: number, frames: Buffer[], end: RunEnd | undefined): Promise<void> {
    const since = Date.now()
    for (let wait = 50; this.#stopReason !== 'lost'; wait = Math.min(wait * 2, 1000)) {
      try {
        const result = await this.#settings.store.append(this.key, this.id, first, frames, end, this.#settings.lease, this.#settings.ttl)
        this.#lastContact = Date.now()
        // Stored (a cancelled run's frames are stored too): the readers here have them now.
        if (result !== 'lost' && this.#listeners.size > 0) for (const listener of Array.from(this.#listeners)) listener.frames(this.id, first, frames, end !== undefined)
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
    if (result === 'cancelled') this.#stopAs('cancelled')
    else if (result === 'lost') {
      this.#lost = true
      for (const listener of Array.from(this.#listeners)) listener.fail(lostError())
      this.#listeners.clear()
      this.#stopAs('lost')
    }
  }
}

const noop = (): void => {}

function lostError (): Error {
  return new Error('the run is no longer this instance\'s (its lease ran out, or the store lost it)')
}
