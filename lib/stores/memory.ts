import { DEFAULT_HISTORY_AGE_MS, DEFAULT_HISTORY_SIZE } from '../constants.js'
import { FST_SSE_HUB_CLOSED, FST_SSE_INVALID_ID } from '../errors.js'
import { isPositionId, positiveInteger, storedEvent, type EventStore, type NewEvent, type Replay, type StoredEvent, type StoreListener } from './store.js'

export interface MemoryStoreOptions {
  /** Events kept per topic (default 1000). */
  historySize?: number
  /** Milliseconds an event is kept (default 5 minutes). */
  historyAge?: number
}

interface Entry extends StoredEvent {
  time: number
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
    const entry = storedEvent(topic, seq, id ?? String(seq), event.event, data, event.tags) as Entry & { time: number }
    entry.time = time
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
