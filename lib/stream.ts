import type { FastifyBaseLogger } from 'fastify'
import { Socket } from 'node:net'
import type { StreamEncoder } from './compress.js'
import { CLOSE_GRACE_MS } from './constants.js'
import type { CloseReason } from './diagnostics.js'
import { serializeEvent, type EventSerializers } from './schema-events.js'
import { encodeComment, jsonData, messageFrame, type EncodedMessage, type MessageData, type MessageOptions } from './encode.js'
import { FST_SSE_INVALID_FIELD, FST_SSE_INVALID_OPTION } from './errors.js'
import type { EventMap } from './events.js'
import { encodeItem, iterate, stopSource, type Source, type SourceItem } from './source.js'

export type { EventMap }

/** The options of a typed JSON event: its name comes from the event map. */
export type SendOptions = Omit<MessageOptions, 'event'>

export interface ConsumeOptions<Events extends EventMap = EventMap> {
  /** Cut the client off when one write waits longer than this many ms for the socket. */
  stallTimeout?: number
  /** Called when the source throws: the item it returns (if any) is sent before the stream closes. */
  onError?: (err: unknown) => SourceItem<Events> | undefined
}

/** What a stream needs of the raw response: the common part of http.ServerResponse and Http2ServerResponse. */
export interface RawResponse {
  write (chunk: Uint8Array): boolean
  end (): unknown
  destroy (): unknown
  readonly writableLength: number
  /** True once the response is gone (its client left before the stream opened, say). */
  readonly destroyed?: boolean
  /** Http2ServerResponse only: the HTTP/2 stream, and through it the session. */
  readonly stream?: { readonly session?: { close (): void } | undefined, readonly destroyed?: boolean }
  on (event: 'drain' | 'close' | 'error', listener: (...args: any[]) => void): unknown
}

/** Where a stream reports that it ended, so that it leaves every registry. */
export interface StreamOwner {
  delete (stream: EventStream<any, any>, reason: CloseReason): void
  /** The stream is being cut off because its client is too slow. */
  slow (stream: EventStream<any, any>): void
}

export interface StreamSettings {
  maxBufferedBytes: number
  log: FastifyBaseLogger
  owner: StreamOwner
  /** Counts every frame a stream takes and every byte it hands to its socket (after compression). */
  sent: { messages: number, bytes: number }
  /** Compresses what the stream writes (the response's Content-Encoding), if the client accepted a coding. */
  encoder?: StreamEncoder | undefined
  /** The route's declared events (`schema.events`): send() serializes with them and sends nothing else. */
  serializers?: EventSerializers | undefined
}

/** A frame as text (encoded to UTF-8 with the rest of its batch) or as bytes. */
type Frame = string | Uint8Array

interface Pending {
  frame: Frame
  resolve: (written: boolean) => void
}

const NONE = Object.freeze([]) as unknown as never[]
const WRITTEN = Promise.resolve(true)
const DONE = Promise.resolve()
const NOT_WRITTEN = Promise.resolve(false)
const HEARTBEAT = encodeComment('')
const ENDED = Symbol('ended')
/** A batch is written as soon as it holds this much, without waiting for the end of the tick. */
const BATCH_SIZE = 16 * 1024
const noop = (): void => {}

/** One buffer for a batch of frames: text frames are encoded together, in one pass. */
function join (frames: Frame[]): Uint8Array {
  if (frames.length === 1) return typeof frames[0] === 'string' ? Buffer.from(frames[0]) : frames[0]
  if (frames.every(frame => typeof frame === 'string')) return Buffer.from(frames.join(''))
  return Buffer.concat(frames.map(frame => typeof frame === 'string' ? Buffer.from(frame) : frame))
}

/** What the direct path needs of an HTTP/1.1 response (http.ServerResponse after writeHead). */
interface Http1Response {
  readonly chunkedEncoding?: boolean
  readonly socket?: unknown
}

const CRLF = Buffer.from('\r\n')
const chunks = new WeakMap<Uint8Array, Buffer>()

/**
 * The frame as one HTTP/1.1 chunk (its size in hex, CRLF, the frame, CRLF), made once per frame however many
 * streams it goes to. Never for an empty frame: an empty chunk ends the body.
 */
function chunkOf (frame: Uint8Array): Buffer {
  let made = chunks.get(frame)
  if (made === undefined) {
    made = chunk(frame)
    chunks.set(frame, made)
  }
  return made
}

/**
 * The current tick, as a number that moves on at the end of every tick in which a stream wrote straight to its
 * socket: a stream takes the direct path once a tick, and the rest of that tick's frames go out together.
 */
let tick = 1
let tickEnding = false
function endTick (): void {
  tick++
  tickEnding = false
}
function thisTick (): number {
  if (!tickEnding) {
    tickEnding = true
    process.nextTick(endTick)
  }
  return tick
}

/** Bytes as one HTTP/1.1 chunk. */
function chunk (bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(bytes.length.toString(16), 'latin1'), CRLF, bytes, CRLF])
}

/** Package-internal: let the registry reach a stream without a public method. */
export const kHeartbeat = Symbol('fastify-event-stream.heartbeat')
export const kEnd = Symbol('fastify-event-stream.end')
export const kOpenedAt = Symbol('fastify-event-stream.opened-at')
export const kDeadline = Symbol('fastify-event-stream.deadline')
export const kCutOff = Symbol('fastify-event-stream.cut-off')
/** The hub the stream is subscribed to, which may hold frames for it until the end of the tick (see Holder). */
export const kHolder = Symbol('fastify-event-stream.holder')
export const kRelease = Symbol('fastify-event-stream.release')
export const kIdle = Symbol('fastify-event-stream.idle')

/**
 * What holds frames for a stream to write them with others at the end of the tick (the hub): anything written to
 * the stream meanwhile has it write them first, so that frames leave in the order they were written.
 */
export interface Holder {
  [kRelease]: (stream: EventStream<any, any>) => void
  /**
   * The frame an idle stream gets at its heartbeat instead of the comment, when the holder has one: a filtered
   * subscriber's position (`id: <position>`), past the events its filter skipped, so that it resumes from there.
   */
  [kIdle]: (stream: EventStream<any, any>) => EncodedMessage | undefined
}
const kDrain = Symbol('fastify-event-stream.drain')
const kError = Symbol('fastify-event-stream.error')
export const kFinish = Symbol('fastify-event-stream.finish')
const kFlush = Symbol('fastify-event-stream.flush')
const kResponseStream = Symbol('fastify-event-stream.response-stream')

/**
 * One open Server-Sent Events response. Frames go out in call order through a FIFO queue that waits while the
 * socket is full and is bounded by maxBufferedBytes; writes never reject and resolve false once the stream ended.
 */
export class EventStream<Events extends EventMap = EventMap, LastEventId = string> {
  /** The Last-Event-ID request header (else the lastEventIdQuery parameter), undefined when absent or empty. */
  readonly lastEventId: LastEventId | undefined
  /** When the stream opened and when it ends of age (ms since the epoch); set by the registry with maxStreamAge. */
  [kOpenedAt] = 0;
  [kDeadline] = Infinity;
  [kHolder]: Holder | undefined = undefined
  readonly #res: RawResponse
  readonly #settings: StreamSettings
  #controller: AbortController | undefined
  #done: Promise<void> | undefined
  #resolveDone: (() => void) | undefined
  // Empty until a frame waits: one shared frozen array, so that an idle stream holds no arrays of its own.
  #queue: Pending[] = NONE
  #queuedBytes = 0
  #blocked = false
  #batch: Frame[] = NONE
  #drainListening = false
  #batchSize = 0
  /** The tick of the stream's last write straight to its socket (see thisTick). */
  #directTick = 0
  #ending = false
  #finished = false
  /** Why the stream ended, set by whatever ended it first. */
  #reason: CloseReason | undefined
  #active = false
  #graceTimer: NodeJS.Timeout | undefined
  /** The socket of an HTTP/1.1 chunked response, which an encoded frame may go to straight (see write()). */
  readonly #socket: Socket | undefined
  #onSocketDrain: (() => void) | undefined

  constructor (res: RawResponse, lastEventId: LastEventId | undefined, settings: StreamSettings) {
    this.#res = res
    this.#settings = settings
    this.lastEventId = lastEventId
    // writeHead() decided the framing: only a chunked HTTP/1.1 body on a real socket takes chunks of ours (not
    // HTTP/2, not HTTP/1.0, not app.inject(), whose response has a socket of its own kind).
    const { chunkedEncoding, socket } = res as Http1Response
    this.#socket = chunkedEncoding === true && socket instanceof Socket ? socket : undefined
    // Shared listeners that find the stream through the response: no closures per stream.
    ;(res as OwnedResponse)[kResponseStream] = this
    res.on('close', onClose)
    res.on('error', onError)
  }

  /** Aborts when the stream ends, whatever the reason. */
  get signal (): AbortSignal {
    // Made on first use: an AbortController is a good part of an idle stream's memory.
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#ending) this.#controller.abort()
    }
    return this.#controller.signal
  }

  /** True once the stream ended or began to close: later writes resolve false. */
  get closed (): boolean {
    return this.#ending
  }

  /** Sends one event. Throws FST_SSE_INVALID_FIELD (and writes nothing) on an invalid field. */
  message (data: MessageData, options?: MessageOptions): Promise<boolean> {
    return this.#enqueue(messageFrame(data, options))
  }

  /**
   * Sends a typed event whose data is the JSON of the payload. On a route that declares its events (`schema.events`),
   * the payload is serialized by the event's compiled schema (fields it does not declare are left out), and an
   * undeclared event or a payload the schema refuses throws FST_SSE_INVALID_EVENT, sending nothing.
   */
  send<E extends keyof Events & string> (event: E, payload: Events[E], options?: SendOptions): Promise<boolean> {
    const serializers = this.#settings.serializers
    const data = serializers === undefined ? jsonData(payload) : serializeEvent(serializers, event, payload)
    return this.message(data, { id: options?.id, retry: options?.retry, event })
  }

  /**
   * Sends a frame encoded once with encodeMessage() or encodeComment(): the way to send one event to many
   * streams without encoding it for each. The bytes are sent as given.
   */
  write (frame: EncodedMessage): Promise<boolean> {
    if (!(frame instanceof Uint8Array)) throw new FST_SSE_INVALID_FIELD('write() takes a frame from encodeMessage()')
    this[kHolder]?.[kRelease](this)
    // An idle HTTP/1.1 stream takes the frame as one ready-made chunk, shared by every stream it goes to (or, when
    // the stream is compressed, its own compressed chunk): one socket write, no tick of its own. Anything waiting (a
    // batch, a queue, bytes in the socket) keeps the ordinary path, and so does a second frame in the same tick: a
    // loop of writes costs two socket writes, not one each.
    if (this.#socket !== undefined && !this.#ending && !this.#blocked && this.#batch.length === 0 && this.#res.writableLength === 0 &&
      frame.length > 0 && this.#directTick !== tick) {
      this.#directTick = thisTick()
      this.#active = true
      const { encoder, sent } = this.#settings
      sent.messages++
      let written: boolean
      if (encoder === undefined) {
        sent.bytes += frame.length
        written = this.#socket.write(chunkOf(frame))
      } else {
        const compressed = encoder.encode(frame)
        sent.bytes += compressed.length
        written = this.#socket.write(chunk(compressed))
      }
      if (!written) this.#waitForSocket(this.#socket)
      return WRITTEN
    }
    return this.#batchOrQueue(frame)
  }

  /** The socket took a chunk of ours but is full: the response will not say when it drains, so the socket does. */
  #waitForSocket (socket: Socket): void {
    this.#blocked = true
    this.#onSocketDrain ??= () => this[kDrain]()
    socket.once('drain', this.#onSocketDrain)
  }

  /** Sends a comment, which clients ignore (useful as a keep-alive). */
  comment (text: string = ''): Promise<boolean> {
    return this.#enqueue(encodeComment(text))
  }

  /**
   * Sends every item of an async iterable, an iterable or a Node Readable, pulling the next one only once the
   * previous one was handed to the socket. When the stream ends first, the source is stopped (`return()` on an
   * iterator, `destroy()` on a Readable) so that its cleanup runs. A source error is logged, `onError`'s item is
   * sent, and the stream closes. Resolves true when the source ran to its end; never rejects.
   */
  consume (source: Source<Events>, options: ConsumeOptions<Events> = {}): Promise<boolean> {
    const { stallTimeout, onError } = options
    if (stallTimeout !== undefined && !(Number.isInteger(stallTimeout) && stallTimeout > 0)) {
      throw new FST_SSE_INVALID_OPTION('stallTimeout', `expected a positive integer of milliseconds, got ${String(stallTimeout)}`)
    }
    const iterator = iterate(source)
    return this.#consume(source, iterator, stallTimeout, onError)
  }

  async #consume (source: unknown, iterator: AsyncIterator<unknown> | Iterator<unknown>, stallTimeout: number | undefined,
    onError: ConsumeOptions<Events>['onError']): Promise<boolean> {
    let done = false
    let stopped!: () => void
    const ended = new Promise<typeof ENDED>(resolve => { stopped = () => resolve(ENDED) })
    this.signal.addEventListener('abort', stopped)
    try {
      while (!this.#ending) {
        const next = Promise.resolve(iterator.next())
        next.catch(noop) // its rejection is handled by the race below, or comes after the stream ended
        const result = await Promise.race([next, ended])
        if (result === ENDED) break
        if (result.done === true) { done = true; break }
        const write = this.#enqueue(encodeItem(result.value))
        if (write !== WRITTEN && !(await this.#settle(write, stallTimeout))) break
      }
    } catch (err) {
      this.#failSource(err, onError)
    } finally {
      this.signal.removeEventListener('abort', stopped)
      if (!done) stopSource(source, iterator, err => this.#settings.log.error({ err }, 'event stream source failed to stop'))
    }
    return done
  }

  /** Waits for a queued write; with a stall timeout, a client that takes nothing for that long is cut off. */
  async #settle (write: Promise<boolean>, stallTimeout: number | undefined): Promise<boolean> {
    if (stallTimeout === undefined) return await write
    const timer = setTimeout(() => this.#cutOff('event stream client stalled: nothing written within stallTimeout, closing it', { stallTimeout }), stallTimeout)
    const written = await write
    clearTimeout(timer)
    return written
  }

  #failSource (err: unknown, onError: ConsumeOptions<Events>['onError']): void {
    this.#settings.log.error({ err }, 'event stream source failed; closing the stream')
    try {
      const item = onError?.(err)
      if (item !== undefined) this.#enqueue(encodeItem(item))
    } catch (failure) {
      this.#settings.log.error({ err: failure }, 'event stream onError failed')
    }
    this.close()
  }

  /** Hands what is queued to the socket, then ends the response. Idempotent; resolves once the response closed. */
  close (): Promise<void> {
    this[kHolder]?.[kRelease](this)
    if (!this.#ending) {
      this.#reason ??= 'server'
      this.#beginEnd()
      // At most one of the two holds frames: the batch fills only while the socket takes writes, the queue only
      // while it does not.
      this[kFlush]()
      this.#flushQueue()
      // A compressed body ends with its coding's trailer, so that the client's decoder sees a clean end.
      if (this.#settings.encoder !== undefined) {
        const trailer = this.#settings.encoder.finish()
        this.#settings.sent.bytes += trailer.length
        this.#res.write(trailer)
      }
      this.#res.end()
      // A client that stopped reading must not hold close() or fastify.close() open.
      this.#graceTimer = setTimeout(() => this.#res.destroy(), CLOSE_GRACE_MS).unref()
    }
    this.#done ??= this.#finished ? DONE : new Promise(resolve => { this.#resolveDone = resolve })
    return this.#done
  }

  /**
   * The server ends the stream (its age, or shutdown): the reconnect hint if any, then close. On shutdown, the
   * HTTP/2 session is ended gracefully too (GOAWAY), since the server waits for every session; an HTTP/1.1
   * connection left idle is closed by Fastify itself.
   */
  async [kEnd] (hint: Uint8Array | undefined, shutdown: boolean): Promise<void> {
    // Taken first: a closed HTTP/2 stream no longer knows its session.
    const session = shutdown ? this.#res.stream?.session : undefined
    this.#reason ??= shutdown ? 'shutdown' : 'age'
    if (hint !== undefined) this.#enqueue(hint)
    await this.close()
    session?.close()
  }

  /** Called once per heartbeat interval: a stream that wrote nothing since the last tick gets a comment. */
  [kHeartbeat] (): void {
    // The heartbeat itself does not count as activity: an idle stream gets one every interval. It goes the way of
    // an encoded frame: straight to an idle HTTP/1.1 socket, as one chunk made once for every stream.
    if (!this.#active) this.write(this[kHolder]?.[kIdle](this) ?? HEARTBEAT)
    this.#active = false
  }

  #enqueue (frame: Frame): Promise<boolean> {
    // Frames a hub holds for this stream go first.
    this[kHolder]?.[kRelease](this)
    return this.#batchOrQueue(frame)
  }

  /** Batches or queues a frame; write() has had the hub release what it holds already. */
  #batchOrQueue (frame: Frame): Promise<boolean> {
    if (this.#ending) return NOT_WRITTEN
    this.#active = true
    // While the socket is full, frames wait as bytes, so that the bound counts bytes. In a batch, text waits as text
    // for the rest of the tick at most, counted by its length.
    if (this.#blocked && typeof frame === 'string') frame = Buffer.from(frame)
    const buffered = this.#queuedBytes + this.#batchSize + this.#res.writableLength
    // A frame always goes into an empty pipe; past that, the bound holds.
    if (buffered > 0 && buffered + frame.length > this.#settings.maxBufferedBytes) {
      this.#cutOff('event stream client too slow: buffered bytes exceed maxBufferedBytes, closing it',
        { bufferedBytes: buffered + frame.length, maxBufferedBytes: this.#settings.maxBufferedBytes })
      return NOT_WRITTEN
    }
    this.#settings.sent.messages++
    if (!this.#blocked) {
      // Frames written in the same tick leave in one socket write, as one chunk.
      if (this.#batch.length === 0) {
        process.nextTick(flushBatch, this)
        this.#batch = [frame]
      } else {
        this.#batch.push(frame)
      }
      this.#batchSize += frame.length
      if (this.#batchSize >= BATCH_SIZE) this[kFlush]()
      return WRITTEN
    }
    this.#queuedBytes += frame.length
    return new Promise(resolve => {
      if (this.#queue.length === 0) this.#queue = [{ frame, resolve }]
      else this.#queue.push({ frame, resolve })
    })
  }

  [kFlush] (): void {
    const batch = this.#batch
    if (batch.length === 0) return
    this.#batch = NONE
    this.#batchSize = 0
    this.#writeResponse(join(batch))
  }

  /** Writes every queued frame in one socket write and resolves their promises. */
  #flushQueue (): void {
    const queue = this.#queue
    if (queue.length === 0) return
    this.#queue = NONE
    this.#queuedBytes = 0
    this.#writeResponse(join(queue.map(pending => pending.frame)))
    for (const pending of queue) pending.resolve(true)
  }

  /**
   * A write through the response (compressed first, if the stream is: each write leaves the compressor whole); when
   * it has to wait, the response's 'drain' is listened to from then on.
   */
  #writeResponse (chunk: Uint8Array): void {
    const encoder = this.#settings.encoder
    const bytes = encoder === undefined ? chunk : encoder.encode(chunk)
    this.#settings.sent.bytes += bytes.length
    this.#blocked = !this.#res.write(bytes)
    if (!this.#blocked || this.#drainListening) return
    this.#drainListening = true
    this.#res.on('drain', onDrain)
  }

  [kDrain] (): void {
    this.#blocked = false
    this.#flushQueue()
  }

  [kError] (err: Error): void {
    this.#settings.log.debug({ err }, 'event stream response failed')
    this.#reason ??= 'error'
    this.#res.destroy()
    this[kFinish]()
  }

  /** Ends the stream of a client that is too slow: logged as a warning, counted, the socket destroyed. */
  [kCutOff] (message: string, details: Record<string, number>): void {
    this.#cutOff(message, details)
  }

  #cutOff (message: string, details: Record<string, number>): void {
    this.#settings.log.warn(details, message)
    this.#reason ??= 'slow'
    this.#settings.owner.slow(this)
    this.#res.destroy()
    this[kFinish]()
  }

  #beginEnd (): void {
    this.#ending = true
    // Ended by nothing of ours: the client left.
    this.#settings.owner.delete(this, this.#reason ?? 'client')
    this.#controller?.abort()
  }

  /** The response is gone (ended, client left, cut off): settle everything and leave every registry. */
  [kFinish] (): void {
    if (this.#finished) return
    this.#finished = true
    if (!this.#ending) this.#beginEnd()
    clearTimeout(this.#graceTimer)
    // The connection may serve another request: it must not call back into this stream.
    if (this.#onSocketDrain !== undefined) this.#socket?.off('drain', this.#onSocketDrain)
    this.#batch = NONE
    this.#batchSize = 0
    const queue = this.#queue
    this.#queue = NONE
    this.#queuedBytes = 0
    for (const pending of queue) pending.resolve(false)
    this.#resolveDone?.()
  }
}

type OwnedResponse = RawResponse & { [kResponseStream]: EventStream<any, any> }

function onDrain (this: OwnedResponse): void { this[kResponseStream][kDrain]() }
function onClose (this: OwnedResponse): void { this[kResponseStream][kFinish]() }
function onError (this: OwnedResponse, err: Error): void { this[kResponseStream][kError](err) }
function flushBatch (stream: EventStream<any, any>): void { stream[kFlush]() }
