import { kHeartbeat, kShutdown, type EventStream, type StreamOwner } from './stream.js'

/**
 * The open streams of one plugin registration: closed together on shutdown, and kept alive by one heartbeat
 * timer that runs only while a stream is open.
 */
export class StreamRegistry implements StreamOwner {
  readonly #streams = new Set<EventStream<any, any>>()
  readonly #heartbeat: number | false
  readonly #onDelete: (stream: EventStream<any, any>) => void
  #timer: NodeJS.Timeout | undefined
  #cutOff = 0

  constructor (heartbeat: number | false, onDelete: (stream: EventStream<any, any>) => void) {
    this.#heartbeat = heartbeat
    this.#onDelete = onDelete
  }

  /** How many streams were cut off because their client was too slow. */
  get cutOff (): number {
    return this.#cutOff
  }

  get size (): number {
    return this.#streams.size
  }

  add (stream: EventStream<any, any>): void {
    this.#streams.add(stream)
    if (this.#timer === undefined && this.#heartbeat !== false) {
      this.#timer = setInterval(this.#beat, this.#heartbeat).unref()
    }
  }

  delete (stream: EventStream<any, any>): void {
    this.#streams.delete(stream)
    if (this.#streams.size === 0) this.#stopTimer()
    this.#onDelete(stream)
  }

  slow (): void {
    this.#cutOff++
  }

  /** Ends every open stream; resolves once all of them closed. */
  async closeAll (): Promise<void> {
    await Promise.all(Array.from(this.#streams, stream => stream[kShutdown]()))
    this.#stopTimer()
  }

  readonly #beat = (): void => {
    for (const stream of this.#streams) stream[kHeartbeat]()
  }

  #stopTimer (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
