import { FST_SSE_INVALID_FIELD } from './errors.js'

/** The fields of one event besides its data. */
export interface MessageOptions {
  /** Written as `id: <id>`; an empty string resets the client's last event id. */
  id?: string | number
  /** Written as `event: <event>` when non-empty; clients dispatch it under that type. */
  event?: string
  /** Reconnection time in whole milliseconds (fraction dropped, negative clamped to 0). */
  retry?: number
}

export type MessageData = string | Uint8Array

declare const encoded: unique symbol
/**
 * One frame encoded by encodeMessage() or encodeComment(): the bytes `stream.write()` sends as they are, to as many
 * streams as you like. Only these functions make one, so a frame written raw is always a valid frame.
 */
export type EncodedMessage = Buffer & { readonly [encoded]: true }

const LF = 0x0a
const CR = 0x0d
const DATA_PREFIX = 'data: '
/** "data: " plus the line feed that ends the line. */
const DATA_LINE_OVERHEAD = 7

/** Validates the non-data fields and renders them as the head of a frame; throws before anything is written. */
export function encodeFields (options: MessageOptions | undefined): string {
  if (options === undefined) return ''
  let head = ''
  const { id, event, retry } = options
  if (id !== undefined) head = 'id: ' + checkId(id) + '\n'
  if (event !== undefined) {
    if (typeof event !== 'string') throw new FST_SSE_INVALID_FIELD('event must be a string')
    if (event !== '') head += 'event: ' + checkLine('event', event) + '\n'
  }
  if (retry !== undefined) head += 'retry: ' + retryMs(retry) + '\n'
  return head
}

/** Encodes one event as a single frame: fields in wire order, one `data:` line per line of data. */
export function encodeMessage (data: MessageData, options?: MessageOptions): EncodedMessage {
  const frame = messageFrame(data, options)
  return (typeof frame === 'string' ? Buffer.from(frame) : frame) as EncodedMessage
}

/**
 * The frame of one event: text for string data (a stream batches text frames and encodes them to UTF-8 once per
 * socket write), bytes for byte data.
 */
export function messageFrame (data: MessageData, options?: MessageOptions): string | Buffer {
  const head = encodeFields(options)
  if (typeof data === 'string') return head + dataLines(data) + '\n'
  if (data instanceof Uint8Array) return encodeBytes(head, data)
  throw new FST_SSE_INVALID_FIELD('data must be a string or a Uint8Array')
}

/** The data of a JSON event; throws for a payload JSON cannot represent (undefined, a function, a symbol). */
export function jsonData (payload: unknown): string {
  const json = JSON.stringify(payload)
  if (json === undefined) throw new FST_SSE_INVALID_FIELD(`a JSON payload must be serialisable, got ${typeof payload}`)
  return json
}

/** Encodes a comment, which clients ignore: `: <text>\n\n`. */
export function encodeComment (text: string = ''): EncodedMessage {
  if (typeof text !== 'string') throw new FST_SSE_INVALID_FIELD('comment must be a string')
  return Buffer.from(': ' + checkLine('comment', text) + '\n\n') as EncodedMessage
}

/**
 * A frame with an id and nothing else: a client sets its last event id from it (and sends it back as
 * Last-Event-ID) without dispatching an event.
 */
export function encodeId (id: string): EncodedMessage {
  return Buffer.from('id: ' + checkId(id) + '\n\n') as EncodedMessage
}

/** A frame that carries only a reconnection hint; clients dispatch no event for it. */
export function encodeRetry (retry: number): Buffer {
  return Buffer.from('retry: ' + retryMs(retry) + '\n\n')
}

function checkId (id: string | number): string {
  if (typeof id === 'number') {
    if (!Number.isFinite(id)) throw new FST_SSE_INVALID_FIELD(`id must be a finite number, got ${id}`)
    return String(id)
  }
  if (typeof id !== 'string') throw new FST_SSE_INVALID_FIELD('id must be a string or a number')
  // A client ignores an id that holds NUL, which would silently break resuming.
  if (id.includes('\0')) throw new FST_SSE_INVALID_FIELD('id must not contain NUL')
  return checkLine('id', id)
}

function checkLine (name: string, value: string): string {
  if (value.includes('\n') || value.includes('\r')) {
    throw new FST_SSE_INVALID_FIELD(`${name} must not contain CR or LF`)
  }
  return value
}

function retryMs (retry: number): number {
  if (typeof retry !== 'number' || !Number.isFinite(retry)) {
    throw new FST_SSE_INVALID_FIELD(`retry must be a finite number of milliseconds, got ${String(retry)}`)
  }
  // Math.max turns -0 into 0 as well.
  return Math.max(0, Math.trunc(retry))
}

/** Splits at CRLF, lone CR and LF alike; every line, trailing empty ones included, becomes a `data:` line. */
function dataLines (data: string): string {
  let lf = data.indexOf('\n')
  let cr = data.indexOf('\r')
  if (lf === -1 && cr === -1) return DATA_PREFIX + data + '\n'
  let out = ''
  let start = 0
  while (lf !== -1 || cr !== -1) {
    const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr)
    out += DATA_PREFIX + data.slice(start, end) + '\n'
    start = end === cr && lf === cr + 1 ? end + 2 : end + 1
    if (lf !== -1 && lf < start) lf = data.indexOf('\n', start)
    if (cr !== -1 && cr < start) cr = data.indexOf('\r', start)
  }
  return out + DATA_PREFIX + data.slice(start) + '\n'
}

/** Byte data is sent as given, split at CR and LF bytes (which never occur inside a UTF-8 multi-byte sequence). */
function encodeBytes (head: string, data: Uint8Array): Buffer {
  let lines = 1
  let breakBytes = 0
  for (let i = 0; i < data.length; i++) {
    const c = data[i]
    if (c !== LF && c !== CR) continue
    lines++
    breakBytes++
    if (c === CR && data[i + 1] === LF) { i++; breakBytes++ }
  }
  const headBytes = Buffer.byteLength(head)
  const frame = Buffer.allocUnsafe(headBytes + lines * DATA_LINE_OVERHEAD + data.length - breakBytes + 1)
  let at = frame.write(head, 0)
  let start = 0
  for (let i = 0; i <= data.length; i++) {
    const c = data[i]
    if (i < data.length && c !== LF && c !== CR) continue
    at += frame.write(DATA_PREFIX, at, 'latin1')
    frame.set(data.subarray(start, i), at)
    at += i - start
    frame[at++] = LF
    if (c === CR && data[i + 1] === LF) i++
    start = i + 1
  }
  frame[at] = LF
  return frame
}
