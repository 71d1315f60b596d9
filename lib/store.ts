import { DEFAULT_HISTORY_AGE_MS, DEFAULT_HISTORY_SIZE } from './constants.js'
import { FST_SSE_HUB_CLOSED, FST_SSE_INVALID_ID, FST_SSE_INVALID_OPTION } from './errors.js'

/** What a publisher hands to the store: the store assigns the position, and the id when none is given. */
export interface NewEvent {
  data: string
  event?: string
  /** The publisher's own id; never a decimal integer (those are positions). */
  id?: string
}

/** An event as the store keeps it. */
export interface StoredEvent {
  readonly topic: string
  /** The store's position for the event: strictly increasing across every topic of the store. */
  readonly seq: number
  /** The id on the wire: the publisher's id, else the position written in decimal. */
  readonly id: string
  readonly event?: string
  readonly data: string
}

export interface Replay {
  /**
   * The events of the topics after the given id, oldest first; null when the id is not a position the store knows
   * (never assigned, from an earlier run, or older than the history kept).
   */
  events: StoredEvent[] | null
  /**
   * The store's latest position when it read: every event of the topics after the given id and up to this one is
   * in `events`. A new reader, and one told to resynchronise, start from here.
   */
  head: number
}

/** Receives every event appended to a topic, in order of position. Must not throw. */
export type StoreListener = (event: StoredEvent) => void

/**
 * The history and the delivery between publishers and subscribers. Asynchronous throughout, so that it can live in
 * another process (Redis, say): positions and ids are assigned by the store, not by the publisher.
 */
export interface EventStore {
  /** Appends an event to a topic and delivers it to the topic's listeners; resolves with the event as stored. */
  append (topic: string, event: NewEvent): Promise<StoredEvent>
  /** The events of the topics after an id (see Replay); with no id, only the head. */
  readAfter (topics: readonly string[], lastEventId: string | undefined): Promise<Replay>
  /**
   * Starts delivering the topic's new events to the listener; resolves once every later append reaches it, with a
   * function that stops the delivery.
   */
  listen (topic: string, listener: StoreListener): Promise<() => Promise<void>>
  close (): Promise<void>
}

export interface MemoryStoreOptions {
  /** Events kept per topic (default 1000). */
  historySize?: number
  /** Milliseconds an event is kept (default 5 minutes). */
  historyAge?: number
}

/** Digits of Number.MAX_SAFE_INTEGER: positions are exact integers in a double. */
const MAX_POSITION_DIGITS = 16

/** A position written as an id: a decimal integer without a sign or leading zeros, exact in a double. */
export function isPositionId (id: string): boolean {
  if (id.length === 0 || id.length > MAX_POSITION_DIGITS || (id.length > 1 && id.charCodeAt(0) === 0x30)) return false
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return id.length < MAX_POSITION_DIGITS || Number.isSafeInteger(Number(id))
}

interface Entry extends StoredEvent {
  readonly time: number
}

/** One topic's history, oldest first, and its listeners. */
interface Log {
  entries: Entry[]
  /** Index of the oldest retained entry: the array is compacted now and then, not shifted per eviction. */
  start: number
  /** The position of the newest event dropped from this history. */
  evicted: number
  listeners: Set<StoreListener>
}

/**
 * The default store: one process, history in memory. Positions start at the clock in microseconds, so that after
 * a restart every id a client kept from the earlier run is older than the history and leads to a resync.
 */
export class MemoryStore implements EventStore {
  readonly #logs = new Map<string, Log>()
  /** Publishers' ids of the retained events. */
  readonly #ids = new Map<string, Entry>()
  readonly #historySize: number
  readonly #historyAge: number
  readonly #first: number
  #head: number
  /** The newest position dropped with a history that was then forgotten: older ids of those topics resync. */
  #forgotten: number
  #sweeper: NodeJS.Timeout | undefined
  #closed = false

  constructor (options: MemoryStoreOptions = {}) {
    this.#historySize = positiveInteger('hub.historySize', options.historySize ?? DEFAULT_HISTORY_SIZE)
    this.#historyAge = positiveInteger('hub.historyAge', options.historyAge ?? DEFAULT_HISTORY_AGE_MS)
    this.#first = Date.now() * 1000
    this.#head = this.#first - 1
    this.#forgotten = this.#head
  }

  async append (topic: string, event: NewEvent): Promise<StoredEvent> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const { id, data } = event
    if (id !== undefined && (isPositionId(id) || this.#ids.has(id))) {
      throw new FST_SSE_INVALID_ID(`${JSON.stringify(id)} is ${isPositionId(id) ? 'a decimal integer, which the store assigns' : 'already in the history'}`)
    }
    const seq = ++this.#head
    const time = Date.now()
    const entry: Entry = event.event === undefined
      ? { topic, seq, id: id ?? String(seq), data, time }
      : { topic, seq, id: id ?? String(seq), event: event.event, data, time }
    if (id !== undefined) this.#ids.set(id, entry)
    const log = this.#log(topic)
    log.entries.push(entry)
    this.#trim(log, time)
    this.#sweeper ??= setInterval(this.#sweep, Math.min(this.#historyAge, 60_000)).unref()
    for (const listener of log.listeners) listener(entry)
    return entry
  }

  async readAfter (topics: readonly string[], lastEventId: string | undefined): Promise<Replay> {
    const head = this.#head
    if (lastEventId === undefined) return { events: [], head }
    const after = isPositionId(lastEventId) ? Number(lastEventId) : this.#ids.get(lastEventId)?.seq
    if (after === undefined || after > head || after < this.#first - 1) return { events: null, head }
    const now = Date.now()
    const events: StoredEvent[] = []
    for (const topic of topics) {
      const log = this.#logs.get(topic)
      if (log !== undefined) this.#trim(log, now)
      // Events of this topic after the id were dropped: replaying the rest would leave a gap.
      if ((log?.evicted ?? this.#forgotten) > after) return { events: null, head }
      if (log !== undefined) collectAfter(log, after, events)
    }
    if (topics.length > 1) events.sort(bySeq)
    return { events, head }
  }

  async listen (topic: string, listener: StoreListener): Promise<() => Promise<void>> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const log = this.#log(topic)
    log.listeners.add(listener)
    return async () => {
      log.listeners.delete(listener)
      this.#forgetIfUnused(topic, log)
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#sweeper)
    this.#sweeper = undefined
    this.#logs.clear()
    this.#ids.clear()
  }

  #log (topic: string): Log {
    let log = this.#logs.get(topic)
    if (log === undefined) {
      log = { entries: [], start: 0, evicted: this.#forgotten, listeners: new Set() }
      this.#logs.set(topic, log)
    }
    return log
  }

  /** Drops what is over the size bound or older than the age bound. */
  #trim (log: Log, now: number): void {
    const { entries } = log
    const oldest = now - this.#historyAge
    while (log.start < entries.length &&
      (entries.length - log.start > this.#historySize || entries[log.start].time <= oldest)) {
      const entry = entries[log.start++]
      log.evicted = entry.seq
      if (this.#ids.get(entry.id) === entry) this.#ids.delete(entry.id)
    }
    if (log.start > 1024 && log.start * 2 > entries.length) {
      log.entries = entries.slice(log.start)
      log.start = 0
    }
  }

  readonly #sweep = (): void => {
    const now = Date.now()
    for (const [topic, log] of this.#logs) {
      this.#trim(log, now)
      this.#forgetIfUnused(topic, log)
    }
    if (this.#logs.size === 0) {
      clearInterval(this.#sweeper)
      this.#sweeper = undefined
    }
  }

  /** A topic with no history and no listener costs nothing: only the newest dropped position is remembered. */
  #forgetIfUnused (topic: string, log: Log): void {
    if (log.listeners.size > 0 || log.start < log.entries.length || this.#logs.get(topic) !== log) return
    this.#logs.delete(topic)
    if (log.evicted > this.#forgotten) this.#forgotten = log.evicted
  }
}

/** Appends the log's entries after a position (found by binary search: positions increase). */
function collectAfter (log: Log, after: number, into: StoredEvent[]): void {
  const { entries } = log
  let low = log.start
  let high = entries.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (entries[middle].seq <= after) low = middle + 1
    else high = middle
  }
  for (let i = low; i < entries.length; i++) into.push(entries[i])
}

function bySeq (a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq
}

/** An integer of 1 to 2^31-1 (a timer's range), else FST_SSE_INVALID_OPTION. */
export function positiveInteger (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new FST_SSE_INVALID_OPTION(name, `expected a positive integer, got ${String(value)}`)
  }
  return value
}
