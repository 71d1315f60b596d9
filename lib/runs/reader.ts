import type { FastifyBaseLogger } from 'fastify'
import type { EncodedMessage } from '../encode.js'
import type { EventStream } from '../stream.js'
import type { RunListener, RunStore } from './store.js'

interface Held {
  readonly first: number
  readonly frames: readonly Buffer[]
  readonly ended: boolean
}

/** Frames one replay read returns at most: a long run is read in pages, each written before the next is read. */
export const RUN_PAGE = 512

/**
 * One reader of a run: an ordinary event stream that gets the run's frames after where it stands, then the live
 * ones, with no gap and no duplicate, and closes after the final frame. Listening starts before reading, so a frame
 * appended in between arrives both ways and its index drops the copy.
 */
export class RunReader implements RunListener {
  readonly #stream: EventStream<any, any>
  readonly #store: RunStore
  readonly #key: string
  readonly #id: string
  readonly #log: FastifyBaseLogger
  /** The index of the newest frame written to the stream. */
  #position: number
  /** Live frames that arrive while the replay is written; null once live. */
  #pending: Held[] | null = []

  constructor (stream: EventStream<any, any>, store: RunStore, key: string, id: string, after: number, log: FastifyBaseLogger) {
    this.#stream = stream
    this.#store = store
    this.#key = key
    this.#id = id
    this.#position = after
    this.#log = log
  }

  /** Replays, then tails; resolves once live (or once the stream ended). A store failure closes the stream. */
  async start (): Promise<void> {
    const stream = this.#stream
    try {
      const stop = await this.#store.listen(this.#key, this)
      if (stream.closed) stop()
      else stream.signal.addEventListener('abort', stop, { once: true })
      while (!stream.closed) {
        const page = await this.#store.read(this.#key, this.#id, this.#position, RUN_PAGE)
        if (page === null) return this.#gone('the key holds another run now')
        const written = this.#write(this.#position + 1, page.frames, page.ended)
        if (page.ended || page.frames.length < RUN_PAGE) break
        // The next page is read once this one was handed to the socket.
        await written
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
    if (id !== this.#id) return this.#gone('the key holds another run now')
    if (this.#pending !== null) this.#pending.push({ first, frames, ended })
    else this.#write(first, frames, ended)
  }

  fail (err: Error): void {
    this.#log.warn({ err, run: this.#key }, 'run store cannot deliver the run without a gap; closing the reader (its client resumes)')
    this.#stream.close()
  }

  /** Writes the frames this reader lacks; closes after the final one. */
  #write (first: number, frames: readonly Buffer[], ended: boolean): Promise<boolean> {
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
      written = this.#stream.write(frames[i] as EncodedMessage)
    }
    if (ended && first + frames.length - 1 <= this.#position) this.#stream.close()
    return written
  }

  #gone (why: string): void {
    this.#log.info({ run: this.#key }, `run reader closed: ${why}`)
    this.#stream.close()
  }
}

const WRITTEN = Promise.resolve(true)
