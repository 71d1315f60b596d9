/** One event as an EventSource dispatches it. */
export interface ParsedEvent {
  /** The event type: the frame's `event` field, else `message`. */
  type: string
  data: string
  /** The last event id, kept across events as EventSource keeps it. */
  lastEventId: string
  /** The id of this event's own frame, when it had one. */
  id?: string
  /** The reconnection time this frame set, when it set one. */
  retry?: number
}

const LF = 10

/**
 * A streaming parser that follows the WHATWG "Parsing an event stream" rules: feed it text in chunks of any size,
 * decoded as UTF-8 decode does (a TextDecoder, which also drops the stream's leading BOM), and it calls `onEvent`
 * for each event a browser would dispatch (comments are ignored).
 */
export class EventStreamParser {
  #buffer = ''
  #skipLF = false
  #data = ''
  #type = ''
  /** The last event ID buffer: set by an id line, it becomes the last event ID when the frame's blank line comes. */
  #idBuffer = ''
  #lastEventId = ''
  #id: string | undefined
  #retry: number | undefined
  #reconnectionTime: number | undefined
  readonly #onEvent: (event: ParsedEvent) => void

  /** `lastEventId`: where a stream resumes, as a reconnecting EventSource keeps its last id. */
  constructor (onEvent: (event: ParsedEvent) => void, lastEventId = '') {
    this.#onEvent = onEvent
    this.#idBuffer = this.#lastEventId = lastEventId
  }

  /**
   * The last id of a complete frame (one that ended with its blank line), whether it dispatched an event or not (an
   * id-only frame): what a reconnecting client sends. An id line of a frame cut off before its end does not count, so
   * that the event it belongs to is sent again.
   */
  get lastEventId (): string {
    return this.#lastEventId
  }

  /** The last reconnection time a `retry:` field set, in a frame that dispatched an event or not (a hint sent alone). */
  get retry (): number | undefined {
    return this.#reconnectionTime
  }

  feed (chunk: string): void {
    let text = chunk
    // A CR at the end of the last chunk already ended its line: an LF right after it belongs to it.
    if (this.#skipLF && text.charCodeAt(0) === LF) text = text.slice(1)
    this.#skipLF = false
    // Line ends found with indexOf (native scans) rather than a loop over every character; CR is rare on the wire.
    let start = 0
    let lf = text.indexOf('\n')
    let cr = text.indexOf('\r')
    while (lf !== -1 || cr !== -1) {
      let end = lf === -1 || (cr !== -1 && cr < lf) ? cr : lf
      this.#line(this.#buffer === '' ? text.slice(start, end) : this.#buffer + text.slice(start, end))
      this.#buffer = ''
      if (end === cr) {
        if (end + 1 === text.length) this.#skipLF = true
        else if (text.charCodeAt(end + 1) === LF) end++
      }
      start = end + 1
      if (lf !== -1 && lf < start) lf = text.indexOf('\n', start)
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start)
    }
    this.#buffer += text.slice(start)
  }

  #line (line: string): void {
    if (line === '') return this.#dispatch()
    const colon = line.indexOf(':')
    if (colon === 0) return
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    if (field === 'data') this.#data += value + '\n'
    else if (field === 'event') this.#type = value
    else if (field === 'id' && !value.includes('\0')) this.#id = this.#idBuffer = value
    else if (field === 'retry' && /^\d+$/.test(value)) this.#retry = this.#reconnectionTime = Number(value)
  }

  #dispatch (): void {
    this.#lastEventId = this.#idBuffer
    const id = this.#id
    const retry = this.#retry
    this.#id = undefined
    this.#retry = undefined
    const type = this.#type
    this.#type = ''
    if (this.#data === '') return
    const event: ParsedEvent = { type: type === '' ? 'message' : type, data: this.#data.slice(0, -1), lastEventId: this.#lastEventId }
    this.#data = ''
    if (id !== undefined) event.id = id
    if (retry !== undefined) event.retry = retry
    this.#onEvent(event)
  }
}
