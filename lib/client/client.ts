import type { EventMap } from '../events.js'
import { EventStreamParser, type ParsedEvent } from '../parse.js'
import { EventClientError, statusError } from './errors.js'
import { shareTabs, type ClientState, type ErrorShape, type TabMessage, type Tabs } from './tabs.js'

/** The data of the server's resync event: the id it could not resume from, and the topics of the stream. */
export interface Resync {
  lastEventId?: string
  topics: string[]
}

/** The event types a client of `Events` listens to: the map's JSON events, `message` (text) and `resync`. */
export type EventName<Events extends EventMap> = (string & keyof Events) | 'message' | 'resync'

/** The data of an event type: parsed JSON of the map's type, text for `message`, the Resync info for `resync`. */
export type EventData<Events extends EventMap, Type extends string> =
  Type extends 'resync' ? Resync : Type extends 'message' ? string : Type extends keyof Events ? Events[Type] : never

/** One event as the client delivers it. */
export interface ClientEvent<Type extends string = string, Data = unknown> {
  readonly type: Type
  readonly data: Data
  /** The id of this event's own frame, if it had one. */
  readonly id: string | undefined
  /** The last event id of the stream at this event: what a reconnect resumes from. */
  readonly lastEventId: string
}

/** Any event of the map, discriminated by `type`: what the async iterator yields. */
export type EventOf<Events extends EventMap> = { [Type in EventName<Events>]: ClientEvent<Type, EventData<Events, Type>> }[EventName<Events>]

/** Where the last event id is kept across page loads. */
export interface IdStorage {
  load: () => string | null | undefined
  save: (id: string) => void
}

export interface ConnectOptions {
  /** Default GET. */
  method?: string
  /** Sent with every connection, so it must be reusable: a string, URLSearchParams, FormData, Blob or buffer. */
  body?: BodyInit | null
  /** Headers, or a function (sync or async) called before every connection: a refreshed token goes out on each. */
  headers?: HeadersInit | (() => HeadersInit | Promise<HeadersInit>)
  credentials?: RequestCredentials
  /** Aborting it closes the client. */
  signal?: AbortSignal
  /** Where to start when no id is stored: sent with the first request. */
  lastEventId?: string
  /** Send the last id as this query parameter (the server's lastEventIdQuery) instead of the Last-Event-ID header. */
  lastEventIdQuery?: string
  /** Keep the last id across page loads: in sessionStorage, localStorage, or your own pair of functions. */
  storage?: 'session' | 'local' | IdStorage
  /** The storage key and the name tabs share a connection under; default: the URL. Required with a URL function. */
  key?: string
  /** The server's resync event type (its hub.resyncEvent), delivered as `resync`. Default 'resync'. */
  resyncEvent?: string
  /** Event types delivered as text, besides `message`; every other type is parsed as JSON. */
  raw?: readonly string[]
  /** The reconnection time until the server sets one with `retry:`, and the base of the backoff (ms). Default 1000. */
  retry?: number
  /** The longest wait between failed attempts (ms). Default 30000. */
  maxRetryDelay?: number
  /**
   * Milliseconds without a byte after which an open stream counts as dead (a half-open connection after a sleep or a
   * network switch, which the OS may not notice for many minutes) and the client reconnects with its last id; false
   * for none. Default: three heartbeat intervals when the server says its interval (this plugin's
   * Event-Stream-Heartbeat header), else none.
   */
  idleTimeout?: number | false
  /** Share one connection among this origin's tabs that ask for the same key (Web Locks and BroadcastChannel). */
  share?: boolean
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch
}

type Listener = (data: any, event: ClientEvent<any, any>) => void
type StateListener = (state: ClientState, error: EventClientError | undefined) => void

const PREFIX = 'fastify-event-stream:'
const NONE: readonly Listener[] = []
/** How many ids a follower keeps to drop repeats: more than a hand-over's replay holds. */
const RECENT = 256
/** How long a leader that stopped for good holds the lock, for the other tabs to hear of it. */
const HANDOVER_MS = 100
/** The longest delay setTimeout takes (a longer one fires at once): a Retry-After of weeks waits this long. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** The response header in which this plugin's server says its heartbeat interval (ms). */
const HEARTBEAT_HEADER = 'event-stream-heartbeat'
/** Heartbeat intervals of silence after which a stream counts as dead: a stream is silent for two at most. */
const IDLE_HEARTBEATS = 3

/** A wait of full jitter: anywhere from 0 to base x 2^(failures - 1), capped (AWS's "full jitter" backoff). */
export function backoff (failures: number, base: number, max: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(max, base * 2 ** (failures - 1)))
}

/**
 * An event stream client: fetch-based, resumable, typed. It connects at once and reconnects until close(), a 204, or
 * an answer that retrying cannot change (a 4xx other than 408 and 429, a body that is not an event stream).
 */
export class EventClient<Events extends EventMap = EventMap> implements AsyncIterable<EventOf<Events>> {
  #state: ClientState = 'connecting'
  #error: EventClientError | undefined
  #lastEventId: string
  #retry: number
  /** The backoff's base: the retry option, not the server's last hint (already spread over seconds). */
  readonly #backoffBase: number
  readonly #url: () => string | URL
  readonly #options: ConnectOptions
  readonly #resyncEvent: string
  readonly #storage: IdStorage | undefined
  readonly #listeners = new Map<string, Set<Listener>>()
  readonly #stateListeners = new Set<StateListener>()
  readonly #inboxes = new Set<Inbox>()
  readonly #stopped = new AbortController()
  #request: AbortController | undefined
  #wake: (() => void) | undefined
  /** The ids of the last events a follower tab got, to drop the ones a new leader's replay repeats. */
  readonly #recent: string[] = []
  /** The browser came back online while no wait was running: the next one is skipped. */
  #woken = false
  /** Stopped by the server's answer (204, an error retrying cannot help), not by close(). */
  #final = false
  readonly #tabs: Tabs | undefined

  constructor (url: string | URL | (() => string | URL), options: ConnectOptions = {}) {
    checkOptions(url, options)
    this.#options = options
    this.#resyncEvent = options.resyncEvent ?? 'resync'
    this.#url = typeof url === 'function' ? url : () => url
    const key = options.key ?? PREFIX + String(url)
    this.#storage = storageOf(options.storage, key)
    this.#lastEventId = load(this.#storage) ?? options.lastEventId ?? ''
    this.#retry = this.#backoffBase = options.retry ?? 1000
    if (options.signal?.aborted === true) {
      this.#stopped.abort()
      this.#state = 'closed'
      return
    }
    options.signal?.addEventListener('abort', this.close, { once: true })
    globalThis.addEventListener?.('online', this.#online)
    globalThis.addEventListener?.('offline', this.#offline)
    this.#tabs = options.share === true ? shareTabs(key, this.#lead, this.#receive) : undefined
    if (this.#tabs === undefined) this.#run().catch(report)
  }

  get state (): ClientState {
    return this.#state
  }

  /** The last error: of the last failed attempt while connecting, of the stop once closed; undefined after a good open. */
  get error (): EventClientError | undefined {
    return this.#error
  }

  /** The last event id, what the next connection resumes from ('' before any). */
  get lastEventId (): string {
    return this.#lastEventId
  }

  /** Whether this tab holds the shared connection (always true without `share`). */
  get leader (): boolean {
    return this.#tabs?.leading ?? true
  }

  /** Calls `listener` with each event of this type (JSON parsed, unless text); returns the function that removes it. */
  on<Type extends EventName<Events>> (type: Type, listener: (data: EventData<Events, Type>, event: ClientEvent<Type, EventData<Events, Type>>) => void): () => void {
    let listeners = this.#listeners.get(type)
    if (listeners === undefined) this.#listeners.set(type, listeners = new Set())
    const added = listener as Listener
    listeners.add(added)
    return () => { listeners.delete(added) }
  }

  /** Calls `listener` on each change of state, and on each failed attempt (with its error); returns the remover. */
  onState (listener: StateListener): () => void {
    this.#stateListeners.add(listener)
    return () => { this.#stateListeners.delete(listener) }
  }

  /** Ends the connection (or this tab's part of a shared one) for good. */
  readonly close = (): void => {
    if (this.#stopped.signal.aborted) return
    this.#stopped.abort()
    this.#request?.abort()
    this.#wake?.()
    this.#options.signal?.removeEventListener('abort', this.close)
    globalThis.removeEventListener?.('online', this.#online)
    globalThis.removeEventListener?.('offline', this.#offline)
    this.#tabs?.close()
    this.#setState('closed', this.#error)
  }

  /**
   * Each event, in order, until the client closes (a stop for an error throws it). The reader pulls: while an
   * iterator holds an event it has not taken, the client reads no more of the response (but a follower tab's events
   * arrive from the leader, unpaced). Leaving the loop detaches the iterator; close() ends the connection.
   */
  [Symbol.asyncIterator] (): AsyncIterator<EventOf<Events>> {
    const inbox = new Inbox(() => this.#inboxes.delete(inbox))
    if (this.#stopped.signal.aborted) inbox.end(this.#failure())
    else this.#inboxes.add(inbox)
    return inbox as unknown as AsyncIterator<EventOf<Events>>
  }

  /**
   * A tab's turn to hold the shared connection. After a stop for good the lock is kept a moment, so that the other
   * tabs hear of it and close rather than each try the same request again.
   */
  readonly #lead = async (): Promise<void> => {
    await this.#run()
    if (this.#final) await new Promise(resolve => setTimeout(resolve, HANDOVER_MS))
  }

  /** Connects, reads, and reconnects until the client stops. */
  async #run (): Promise<void> {
    let failures = 0
    while (!this.#stopped.signal.aborted) {
      let delay: number
      try {
        if (!await this.#connect()) return this.#stop(undefined)
        failures = 0
        // The reconnection time as the stream left it: a hint sent just before the end counts.
        delay = this.#retry
      } catch (err) {
        if (this.#stopped.signal.aborted) return
        const error = err as EventClientError
        if (!error.retryable) return this.#stop(error)
        delay = error.retryAfter ?? backoff(++failures, this.#backoffBase, this.#options.maxRetryDelay ?? 30_000)
        this.#setState('connecting', error)
      }
      await this.#sleep(delay)
    }
  }

  /** One connection: false on 204, true once an opened stream ended; throws an EventClientError for a failed attempt. */
  async #connect (): Promise<boolean> {
    const request = this.#request = new AbortController()
    const response = await this.#fetch(request.signal)
    if (response.status === 204) return false
    const type = response.headers.get('content-type') ?? ''
    if (!response.ok || !/^text\/event-stream\s*(;|$)/i.test(type)) {
      response.body?.cancel().catch(() => {})
      if (!response.ok) throw statusError(response)
      throw new EventClientError('FST_SSE_CLIENT_CONTENT_TYPE', `Expected text/event-stream, got ${type || 'no content type'}`, { status: response.status })
    }
    this.#setState('open', undefined)
    // A body-less answer (HEAD, say) is a stream that ended at once.
    if (response.body !== null) await this.#read(response.body, this.#idleTimeout(response))
    else this.#setState('connecting', undefined)
    return true
  }

  async #fetch (signal: AbortSignal): Promise<Response> {
    const { method, body, headers, credentials, lastEventIdQuery } = this.#options
    let url: URL
    try {
      url = new URL(this.#url(), globalThis.location?.href)
    } catch (err) {
      throw new EventClientError('FST_SSE_CLIENT_INVALID_OPTION', 'The event stream URL is not a URL', { cause: err })
    }
    try {
      const sent = new Headers(typeof headers === 'function' ? await headers() : headers)
      sent.set('accept', 'text/event-stream')
      const id = this.#lastEventId
      if (id !== '' && lastEventIdQuery !== undefined) url.searchParams.set(lastEventIdQuery, id)
      else if (id !== '') sent.set('last-event-id', id)
      const init: RequestInit = { method, headers: sent, signal }
      if (body !== undefined) init.body = body
      if (credentials !== undefined) init.credentials = credentials
      return await (this.#options.fetch ?? fetch)(url, init)
    } catch (err) {
      throw new EventClientError('FST_SSE_CLIENT_NETWORK', 'The event stream could not be reached', { retryable: true, cause: err })
    }
  }

  /** The option, else three heartbeat intervals of the server's, else none. */
  #idleTimeout (response: Response): number | undefined {
    const { idleTimeout } = this.#options
    if (idleTimeout !== undefined) return idleTimeout === false ? undefined : idleTimeout
    const heartbeat = Number(response.headers.get(HEARTBEAT_HEADER) ?? NaN)
    return Number.isSafeInteger(heartbeat) && heartbeat > 0 ? Math.min(heartbeat * IDLE_HEARTBEATS, MAX_TIMER_MS) : undefined
  }

  /**
   * Reads the stream until it ends; a break after the open is not a failure: the next attempt comes after `retry`.
   * With an idle timeout, a stream that sends nothing for that long is given up (while an iterator holds events the
   * client is not reading, and silence is not the server's).
   */
  async #read (body: ReadableStream<Uint8Array>, idleTimeout: number | undefined): Promise<void> {
    const reader = body.getReader()
    const decoder = new TextDecoder()
    const parser = new EventStreamParser(this.#dispatch, this.#lastEventId)
    let error: EventClientError | undefined
    let heard = Date.now()
    let waiting = false
    let idle = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const check = (): void => {
      const left = waiting ? idleTimeout as number : heard + (idleTimeout as number) - Date.now()
      if (left > 0) {
        timer = setTimeout(check, left)
        return
      }
      idle = true
      this.#request?.abort()
    }
    if (idleTimeout !== undefined) timer = setTimeout(check, idleTimeout)
    try {
      for (;;) {
        waiting = true
        await this.#demand()
        waiting = false
        heard = Date.now()
        const { done, value } = await reader.read()
        if (done) break
        heard = Date.now()
        parser.feed(decoder.decode(value, { stream: true }))
        this.#retry = parser.retry ?? this.#retry
        this.#saveId(parser.lastEventId)
      }
    } catch (err) {
      error = new EventClientError('FST_SSE_CLIENT_NETWORK', 'The event stream broke', { retryable: true, cause: err })
    }
    clearTimeout(timer)
    if (idle) error = new EventClientError('FST_SSE_CLIENT_IDLE', `Nothing arrived for ${String(idleTimeout)} ms; reconnecting`, { retryable: true })
    reader.cancel().catch(() => {})
    if (!this.#stopped.signal.aborted) this.#setState('connecting', error)
  }

  /** Waits while an iterator holds events it has not taken. */
  async #demand (): Promise<void> {
    for (const inbox of this.#inboxes) await inbox.taken()
  }

  readonly #dispatch = (event: ParsedEvent): void => {
    // close() from a listener: the rest of the chunk's events go nowhere.
    if (this.#stopped.signal.aborted) return
    if (this.#tabs?.leading === true) this.#tabs.post({ t: 'event', event })
    let type = event.type
    let data: unknown = event.data
    if (type === this.#resyncEvent) type = 'resync'
    if (type !== 'message' && this.#options.raw?.includes(type) !== true) {
      try {
        data = JSON.parse(event.data)
      } catch (err) {
        this.#error = new EventClientError('FST_SSE_CLIENT_INVALID_JSON', `The data of a ${type} event is not JSON`, { cause: err })
        return this.#notify()
      }
    }
    const delivered: ClientEvent = { type, data, id: event.id, lastEventId: event.lastEventId }
    for (const listener of this.#listeners.get(type) ?? NONE) call(listener, data, delivered)
    for (const inbox of this.#inboxes) inbox.push(delivered)
  }

  #saveId (id: string): void {
    if (id === this.#lastEventId) return
    this.#lastEventId = id
    try {
      this.#storage?.save(id)
    } catch {} // A full or blocked storage costs the resume after a reload, not the stream.
    if (this.#tabs?.leading === true) this.#tabs.post({ t: 'id', id })
  }

  /** What a follower tab hears from the leader, and the hello of a new tab. */
  readonly #receive = (message: TabMessage): void => {
    if (this.#tabs?.leading === true) {
      this.#tabs.post({ t: 'state', state: this.#state, error: shapeOf(this.#error) })
    } else if (message.t === 'event') {
      // A new leader replays from its last id, which may be behind what the old one sent just before it left.
      const { id } = message.event
      if (id !== undefined && this.#recent.includes(id)) return
      if (id !== undefined && this.#recent.push(id) > RECENT) this.#recent.shift()
      this.#dispatch(message.event)
      this.#saveId(message.event.lastEventId)
    } else if (message.t === 'id') {
      this.#saveId(message.id)
    } else if (message.t === 'state') {
      const { state, error } = message
      const received = error === undefined ? undefined : new EventClientError(error.code, error.message, error)
      if (state === 'closed') this.#stop(received)
      else this.#setState(state, received)
    }
  }

  /** The server said stop (204) or retrying cannot help: every tab closes. */
  #stop (error: EventClientError | undefined): void {
    this.#final = true
    this.#error = error
    if (this.#tabs?.leading === true) this.#tabs.post({ t: 'state', state: 'closed', error: shapeOf(error) })
    this.close()
  }

  #failure (): EventClientError | undefined {
    return this.#error?.retryable === false ? this.#error : undefined
  }

  #setState (state: ClientState, error: EventClientError | undefined): void {
    this.#state = state
    this.#error = error
    // Back online counts for the attempt it woke, not for the wait after a stream that opened.
    if (state === 'open') this.#woken = false
    if (state !== 'closed' && this.#tabs?.leading === true) this.#tabs.post({ t: 'state', state, error: shapeOf(error) })
    if (state === 'closed') for (const inbox of this.#inboxes) inbox.end(this.#failure())
    this.#notify()
  }

  #notify (): void {
    for (const listener of this.#stateListeners) call(listener, this.#state, this.#error)
  }

  #sleep (ms: number): Promise<void> {
    // Closed while the last attempt ran: no wait (close() found none to cut short).
    if (this.#woken || this.#stopped.signal.aborted) {
      this.#woken = false
      return Promise.resolve()
    }
    return new Promise(resolve => {
      const timer = setTimeout(this.#wake = () => {
        clearTimeout(timer)
        this.#wake = undefined
        resolve()
      }, Math.min(ms, MAX_TIMER_MS))
    })
  }

  /** Back online: the wait for the next attempt is over. */
  readonly #online = (): void => {
    if (this.#wake === undefined) this.#woken = this.#state === 'connecting'
    else this.#wake()
  }

  /** Offline: the connection is gone, whether its socket knows it yet or not. */
  readonly #offline = (): void => { this.#request?.abort() }
}

/** What the async iterator reads from: events the client pushed, taken one by one. */
class Inbox {
  readonly #events: ClientEvent[] = []
  #ended = false
  #error: EventClientError | undefined
  #waiting: ((result: IteratorResult<ClientEvent>) => void) | undefined
  #rejecting: ((err: unknown) => void) | undefined
  #drained: (() => void) | undefined
  readonly #detach: () => void

  constructor (detach: () => void) {
    this.#detach = detach
  }

  push (event: ClientEvent): void {
    if (this.#waiting === undefined) {
      this.#events.push(event)
      return
    }
    this.#waiting({ value: event, done: false })
    this.#waiting = this.#rejecting = undefined
  }

  end (error: EventClientError | undefined): void {
    this.#ended = true
    this.#error = error
    this.#detach()
    this.#drained?.()
    if (this.#waiting === undefined) return
    if (error === undefined) this.#waiting({ value: undefined, done: true })
    else this.#rejecting?.(error)
    this.#waiting = this.#rejecting = undefined
  }

  /** Resolves once every pushed event has been taken. */
  taken (): Promise<void> | undefined {
    if (this.#events.length === 0 || this.#ended) return undefined
    return new Promise(resolve => { this.#drained = resolve })
  }

  next (): Promise<IteratorResult<ClientEvent>> {
    const event = this.#events.shift()
    if (this.#events.length === 0) this.#drained?.()
    if (event !== undefined) return Promise.resolve({ value: event, done: false })
    if (this.#ended) {
      const error = this.#error
      this.#error = undefined
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error)
    }
    return new Promise((resolve, reject) => {
      this.#waiting = resolve
      this.#rejecting = reject
    })
  }

  return (): Promise<IteratorResult<ClientEvent>> {
    this.#events.length = 0
    this.end(undefined)
    return Promise.resolve({ value: undefined, done: true })
  }
}

/** A listener that throws is the app's bug: reported as uncaught, as EventTarget reports it, and the stream goes on. */
function call (listener: (a: any, b: any) => void, a: unknown, b: unknown): void {
  try {
    listener(a, b)
  } catch (err) {
    report(err)
  }
}

function report (err: unknown): void {
  setTimeout(() => { throw err })
}

function shapeOf (error: EventClientError | undefined): ErrorShape | undefined {
  return error === undefined ? undefined : { code: error.code, message: error.message, status: error.status, retryable: error.retryable }
}

function storageOf (storage: ConnectOptions['storage'], key: string): IdStorage | undefined {
  if (storage === undefined || typeof storage === 'object') return storage
  return {
    load: () => area(storage)?.getItem(key),
    save: id => area(storage)?.setItem(key, id)
  }
}

/** The browser's storage area; undefined where there is none, or where the page may not use it. */
function area (storage: 'session' | 'local'): Storage | undefined {
  try {
    return storage === 'local' ? globalThis.localStorage : globalThis.sessionStorage
  } catch {
    return undefined
  }
}

function load (storage: IdStorage | undefined): string | undefined {
  try {
    return storage?.load() ?? undefined
  } catch {
    return undefined
  }
}

function checkOptions (url: unknown, options: ConnectOptions): void {
  const invalid = (message: string): EventClientError => new EventClientError('FST_SSE_CLIENT_INVALID_OPTION', message)
  if (typeof url === 'function') {
    if (options.key === undefined && (options.storage === 'session' || options.storage === 'local' || options.share === true)) {
      throw invalid('A URL function needs a key for storage and share')
    }
  } else if (typeof url !== 'string' && !(url instanceof URL)) throw invalid('Expected a URL, a string or a function that returns one')
  for (const name of ['retry', 'maxRetryDelay'] as const) {
    const value = options[name]
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) throw invalid(`${name}: expected whole milliseconds, got ${String(value)}`)
  }
  const { idleTimeout } = options
  if (idleTimeout !== undefined && idleTimeout !== false && !(Number.isSafeInteger(idleTimeout) && idleTimeout > 0 && idleTimeout <= MAX_TIMER_MS)) {
    throw invalid(`idleTimeout: expected whole milliseconds in 1-${MAX_TIMER_MS} or false, got ${String(idleTimeout)}`)
  }
  const { storage } = options
  if (storage !== undefined && storage !== 'session' && storage !== 'local' &&
    (typeof storage?.load !== 'function' || typeof storage.save !== 'function')) {
    throw invalid('storage: expected \'session\', \'local\' or { load, save }')
  }
  if (options.body !== undefined && options.body !== null && /^(GET|HEAD)$/i.test(options.method ?? 'GET')) throw invalid('body: a GET or HEAD request has none')
  if (options.lastEventId !== undefined && /[\r\n\0]/.test(options.lastEventId)) throw invalid('lastEventId: no CR, LF or NUL')
}
