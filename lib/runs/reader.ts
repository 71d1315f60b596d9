import type { FastifyBaseLogger } from 'fastify'
import type { EncodedMessage } from '../encode.js'
import type { EventStream } from '../stream.js'
import type { RunListener, RunPage, RunStore } from './store.js'

/** Where a reader hears of new frames when not from the store: the run's owner, on the same instance. */
export interface LocalRun {
  listen: (listener: RunListener) => () => void
}

/** Frames one replay read returns at most: a long run is read in pages, each written before the next is read. */
export const RUN_PAGE = 512

interface Held {
  readonly first: number
  readonly frames: readonly Buffer[]
  readonly ended: boolean
}

/**
 * One reader of a run: an ordinary event stream that gets the run's frames after where it stands, then the live
 * ones, with no gap and no duplicate, and closes after the final frame. It listens before it reads, so a frame
 * appended in between arrives both ways and its index drops the copy; and it reads before the stream opens, so that
 * a store that fails answers the request with an error, and the client gets its headers with what it missed.
 */
export class RunReader implements RunListener {
  readonly #store: RunStore
  readonly #key: string
  readonly #id: string
  readonly #log: FastifyBaseLogger
  readonly #owner: LocalRun | undefined
  #stream: EventStream<any, any> | undefined
  /** The index of the newest frame written to the stream (or, until it opens, read past). */
  #position: number
  /** The first page, read before the stream opens. */
  #page: RunPage | undefined
  /** Live frames that arrive before the replay is written; null once live. */
  #pending: Held[] | null = []
  /** Why the stream must close as soon as it opens (the store failed, or the key holds another run now). */
  #closeReason: string | undefined
  /** Stops listening: set by prepare(), which runs first. */
  #stop!: () => void

  /** With `owner`, new frames come from the run's owner here instead of the store (which still serves the replay). */
  constructor (store: RunStore, key: string, id: string, after: number, log: FastifyBaseLogger, owner?: LocalRun) {
    this.#store = store
    this.#key = key
    this.#id = id
    this.#position = after
    this.#log = log
    this.#owner = owner
  }

  /** Listens, then reads the first page: false when the key holds another run now. A store failure throws. */
  async prepare (): Promise<boolean> {
    this.#stop = this.#owner === undefined ? await this.#store.listen(this.#key, this) : this.#owner.listen(this)
    let page: RunPage | null
    try {
      page = await this.#store.read(this.#key, this.#id, this.#position, RUN_PAGE)
    } catch (err) {
      this.#stop()
      throw err
    }
    if (page === null) this.#stop()
    else this.#page = page
    return page !== null
  }

  /** Writes the replay to the opened stream, page by page, then goes live; resolves once live (or closed). */
  async attach (stream: EventStream<any, any>): Promise<void> {
    this.#stream = stream
    // A client that left while the replay was read has a stream that is closed already.
    if (stream.closed) return this.#stop()
    stream.signal.addEventListener('abort', this.#stop, { once: true })
    if (this.#closeReason !== undefined) return this.#close(this.#closeReason)
    let page = this.#page as RunPage
    try {
      for (;;) {
        const written = this.#write(this.#position + 1, page.frames, page.ended)
        if (page.ended || page.frames.length < RUN_PAGE || stream.closed) break
        // The next page is read once this one was handed to the socket.
        await written
        const next = await this.#store.read(this.#key, this.#id, this.#position, RUN_PAGE)
        if (next === null) return this.#close('the key holds another run now')
        page = next
      }
    } catch (err) {
      this.#log.error({ err, run: this.#key }, 'run store failed while a reader replayed; closing the stream')
      stream.close()
      return
    }
    const pending = this.#pending as Held[]
    this.#pending = null
    for (const { first, frames, ended } of pending) this.#write(first, frames, ended)
  }

  frames (id: string, first: number, frames: readonly Buffer[], ended: boolean): void {
    if (id !== this.#id) this.#close('the key holds another run now')
    else if (this.#pending !== null) this.#pending.push({ first, frames, ended })
    else this.#write(first, frames, ended)
  }

  fail (err: Error): void {
    this.#log.warn({ err, run: this.#key }, 'run store cannot deliver the run without a gap; closing the reader (its client resumes)')
    this.#close('the store failed')
  }

  /** Writes the frames this reader lacks; closes after the final one. */
  #write (first: number, frames: readonly Buffer[], ended: boolean): Promise<boolean> {
    const stream = this.#stream as EventStream<any, any>
    let written: Promise<boolean> = WRITTEN
    for (let i = 0; i < frames.length; i++) {
      const index = first + i
      if (index <= this.#position) continue
      // Frames come in order from one store: a hole means this reader missed some, and its client must resume.
      if (index !== this.#position + 1) {
        this.fail(new Error(`frame ${index} arrived after ${this.#position}`))
        return written
      }
      this.#position = index
      written = stream.write(frames[i] as EncodedMessage)
    }
    if (ended && first + frames.length - 1 <= this.#position) stream.close()
    return written
  }

  /** Closes the stream, or has it closed as soon as it opens. */
  #close (why: string): void {
    if (this.#stream === undefined) {
      this.#closeReason ??= why
      return
    }
    this.#log.info({ run: this.#key }, `run reader closed: ${why}`)
    this.#stream.close()
  }
}

const WRITTEN = Promise.resolve(true)
