import { randomUUID } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { DEFAULT_HISTORY_AGE_MS, DEFAULT_HISTORY_SIZE } from '../constants.js'
import { FST_SSE_HUB_CLOSED, FST_SSE_INVALID_ID, FST_SSE_INVALID_OPTION, FST_SSE_STORE_UNAVAILABLE } from '../errors.js'
import type { Tags } from '../filter.js'
import { LiveReader, parseTags, type ReaderStats } from './redis-reader.js'
import { RedisPresenceStore } from './redis-presence.js'
import { RedisRunStore } from './redis-runs.js'
import { Script } from './redis-script.js'
import { APPEND, READ } from './redis-scripts.js'
import {
  isPositionId, positiveInteger, storedEvent, type EventStore, type NewEvent, type Replay, type StoredEvent, type StoreFailure, type StoreListener
} from './store.js'

/** The store's settings, beside the connection (see RedisStoreOptions). */
export interface RedisStoreSettings {
  /** The start of every key, with a hash tag so that every key lands in one Cluster slot (default `{sse}`). */
  prefix?: string
  /** Events kept per topic (default 1000). */
  historySize?: number
  /** Milliseconds an event is kept (default 5 minutes). */
  historyAge?: number
  /**
   * Milliseconds the keys of a topic live after its last publish, and the store's own keys after the last publish
   * of any (default 24 hours, at least historyAge). Past it an unused topic costs nothing in Redis.
   */
  keyTtl?: number
  /** Milliseconds a publish or a subscription waits for Redis before failing with FST_SSE_STORE_UNAVAILABLE (default 3000). */
  timeout?: number
  /**
   * Milliseconds between the checks that a run's owner still holds its lease, on each instance with readers of it
   * (default 1000; see `runStore()`).
   */
  leaseCheck?: number
  /** Where the reader reports connection trouble it recovers from (for example `app.log`). */
  log?: { warn: (details: object, message: string) => void }
}

/** Exactly one of `client` (a client the app has) and `connection` (for clients the store opens itself). */
export type RedisStoreOptions = RedisStoreSettings & (
  | {
    /**
     * An ioredis client the app already has (for example `app.redis` from @fastify/redis). The store sends its
     * commands on it and never closes it; it opens one extra connection of its own (a duplicate) for blocking reads.
     */
    client: Redis
    connection?: undefined
  }
  | {
    /** A URL or ioredis options: the store opens both connections itself and closes them with the app. */
    connection: string | RedisOptions
    client?: undefined
  }
)

/** Entries one replay or catch-up page returns at most. */
const PAGE = 512
/** Appends one script call carries at most. */
const MAX_BATCH = 256
/** Checkpoints of the position clock, per key TTL: the precision of "older than the key TTL". */
const CLOCK_STEPS = 1024
const DEFAULT_KEY_TTL_MS = 24 * 60 * 60_000
const DEFAULT_TIMEOUT_MS = 3000

const appendScript = new Script(APPEND)
const readScript = new Script(READ)

type Entry = [id: string, fields: string[]]

/** The store's counters beside the hub's (`app.eventHub.stats().store`). */
export type RedisStoreStats = ReaderStats

/**
 * A store on Redis, shared by every server instance that uses the same Redis and prefix. Each topic's history is a
 * stream; positions come from one counter, assigned with the entry in one script that also publishes the event on
 * the topic's channel, so they increase strictly across topics and instances. One live reader per instance
 * subscribes to the channels of the topics its subscribers read (lib/stores/redis-reader.ts). See the README for
 * the data model, the epochs, the faults and the capacity.
 */
export class RedisStore implements EventStore {
  readonly #client: Redis
  readonly #reader: LiveReader
  readonly #ownsClient: boolean
  readonly #prefix: string
  readonly #historySize: number
  readonly #historyAge: number
  readonly #keyTtl: number
  readonly #timeout: number
  readonly #log: RedisStoreSettings['log']
  /** The newest position this instance saw: Redis below it lost writes. */
  #seen = 0
  #closed = false
  /** Appends waiting for the end of the tick, sent together. */
  readonly #pending: Array<{ topic: string, event: NewEvent, resolve: (event: StoredEvent) => void, reject: (err: unknown) => void }> = []
  /** Resolves when the command connection is ready again; one wait shared by every command sent meanwhile. */
  #ready: Promise<void> | undefined
  readonly #leaseCheck: number
  #runs: RedisRunStore | undefined

  constructor (options: RedisStoreOptions) {
    const { client, connection } = options
    if ((client === undefined) === (connection === undefined)) {
      throw new FST_SSE_INVALID_OPTION('RedisStore', 'expected exactly one of client (an ioredis client) and connection (a URL or ioredis options)')
    }
    this.#prefix = prefixOf(options.prefix ?? '{sse}')
    this.#historySize = positiveInteger('historySize', options.historySize ?? DEFAULT_HISTORY_SIZE)
    this.#historyAge = positiveInteger('historyAge', options.historyAge ?? DEFAULT_HISTORY_AGE_MS)
    this.#keyTtl = positiveInteger('keyTtl', options.keyTtl ?? Math.max(DEFAULT_KEY_TTL_MS, this.#historyAge))
    if (this.#keyTtl < this.#historyAge) throw new FST_SSE_INVALID_OPTION('keyTtl', 'must be at least historyAge')
    this.#timeout = positiveInteger('timeout', options.timeout ?? DEFAULT_TIMEOUT_MS)
    this.#leaseCheck = positiveInteger('leaseCheck', options.leaseCheck ?? 1000)
    this.#log = options.log
    this.#ownsClient = client === undefined
    this.#client = client ?? (typeof connection === 'string' ? new Redis(connection) : new Redis(connection as RedisOptions))
    if (this.#ownsClient) this.#client.on('error', this.#onError)
    // Its own connection, in subscriber mode. It sends only while connected and resubscribes by itself: after a
    // reconnection it catches up from the last position it delivered.
    const sub = this.#client.duplicate({ maxRetriesPerRequest: null, autoResubscribe: false, autoResendUnfulfilledCommands: false, enableOfflineQueue: false })
    sub.on('error', this.#onError)
    this.#reader = new LiveReader(sub, {
      head: async () => await this.#read([], undefined),
      chain: async (topic, after, head) => await this.#chain(topic, after, head, []),
      see: position => { this.#see(position) },
      log: this.#log ?? { warn: noop }
    })
  }

  /**
   * Appends are sent in batches: whatever is published in one tick goes to Redis as one script call, so that the
   * epoch, the clock and the head are dealt with once for all of them and Redis reads one command, not one each.
   */
  async append (topic: string, event: NewEvent): Promise<StoredEvent> {
    const { id } = event
    if (id !== undefined && isPositionId(id)) throw new FST_SSE_INVALID_ID(`${JSON.stringify(id)} is a decimal integer, which the store assigns`)
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    return await new Promise<StoredEvent>((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(this.#flush)
      this.#pending.push({ topic, event, resolve, reject })
    })
  }

  readonly #flush = (): void => {
    const batch = this.#pending.splice(0, MAX_BATCH)
    if (this.#pending.length > 0) setImmediate(this.#flush)
    const keys = [this.#meta, this.#clock]
    const args: Array<string | number> = [this.#seen, this.#historySize, this.#historyAge, this.#keyTtl, Math.ceil(this.#keyTtl / CLOCK_STEPS)]
    for (const { topic, event } of batch) {
      keys.push(this.#key(topic), this.#lastKey(topic), this.#idKey(event.id ?? ''), this.#channel(topic))
      args.push(event.data, event.event ?? '', event.id ?? '', event.tags === undefined ? '' : JSON.stringify(event.tags))
    }
    this.#command(() => appendScript.run(this.#client, keys, args)).then(reply => {
      const positions = reply as string[]
      for (let i = 0; i < batch.length; i++) {
        const { topic, event, resolve, reject } = batch[i]
        const position = positions[i + 1]
        if (position === '') reject(new FST_SSE_INVALID_ID(`${JSON.stringify(event.id)} is already in the history`))
        else resolve(stored(topic, this.#see(Number(position)), event.id, event.event, event.data, event.tags))
      }
    }, (err: unknown) => { for (const { reject } of batch) reject(err) })
  }

  async readAfter (topics: readonly string[], lastEventId: string | undefined): Promise<Replay> {
    const read = await this.#read(topics, lastEventId)
    const { head } = read
    if (lastEventId === undefined) return { events: [], head }
    if (read.pages === null) return { events: null, head }
    const events: StoredEvent[] = []
    for (let i = 0; i < topics.length; i++) {
      const page = read.pages[i]
      for (const entry of page) events.push(fromEntry(topics[i], entry))
      // A longer history is read on in pages; what is trimmed meanwhile shows as a broken link.
      if (page.length === PAGE && await this.#chain(topics[i], seqOf(page[PAGE - 1][0]), head, events) === null) return { events: null, head }
    }
    if (topics.length > 1) events.sort(bySeq)
    return { events, head }
  }

  async listen (topic: string, listener: StoreListener, onFailure?: StoreFailure): Promise<() => Promise<void>> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const { placed, stop } = this.#reader.listen(topic, this.#channel(topic), listener, onFailure)
    try {
      await this.#timed(placed, 'listen')
    } catch (err) {
      stop()
      throw err
    }
    return async () => { stop() }
  }

  /** The live reader's counters: how far behind it is, its reconnections and catch-ups, the gaps it could not fill. */
  stats (): RedisStoreStats {
    return this.#reader.stats()
  }

  /**
   * The run store on the same Redis and prefix (made once): the plugin's `eventRuns` use it when this is the hub's
   * store, so that runs span the same instances as topics.
   */
  runStore (): RedisRunStore {
    this.#runs ??= new RedisRunStore({
      client: this.#client,
      prefix: this.#prefix,
      command: async send => await this.#command(send),
      log: this.#log ?? { warn: noop },
      onError: this.#onError
    }, { leaseCheck: this.#leaseCheck })
    return this.#runs
  }

  /** Presence on the same Redis and prefix, for this instance (see lib/stores/redis-presence.ts). */
  presence (ttl: number): RedisPresenceStore {
    return new RedisPresenceStore({ client: this.#client, prefix: this.#prefix, command: async send => await this.#command(send) }, randomUUID(), ttl)
  }

  /** Stops the reader and closes the connections the store opened; a client that was handed in stays open. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#runs?.close()
    this.#reader.close()
    if (this.#ownsClient) this.#client.disconnect()
  }

  get #meta (): string { return `${this.#prefix}:meta` }
  get #clock (): string { return `${this.#prefix}:clock` }
  #key (topic: string): string { return `${this.#prefix}:t:${topic}` }
  #lastKey (topic: string): string { return `${this.#prefix}:l:${topic}` }
  #channel (topic: string): string { return `${this.#prefix}:c:${topic}` }
  #idKey (id: string): string { return `${this.#prefix}:id:${id}` }

  /**
   * The head and the epoch, and with a last event id each topic's first page after it, or null pages when an event
   * after it is no longer kept (or the id cannot be placed).
   */
  async #read (topics: readonly string[], lastEventId: string | undefined): Promise<{ head: number, epoch: number, pages: Entry[][] | null }> {
    const pubId = lastEventId !== undefined && !isPositionId(lastEventId) ? lastEventId : ''
    const from = lastEventId !== undefined && pubId === '' ? lastEventId : ''
    const keys = [this.#meta, this.#clock, this.#idKey(pubId), ...topics.map(topic => this.#key(topic))]
    const reply = await this.#command(() => readScript.run(this.#client, keys,
      [this.#seen, this.#historySize, this.#historyAge, this.#keyTtl, pubId, from, PAGE])) as [string, string, string, string, ...Entry[][]]
    const head = this.#see(Number(reply[0]))
    const placed = reply[2] !== '' && reply[3] === ''
    return { head, epoch: Number(reply[1]), pages: placed ? reply.slice(4) as Entry[][] : null }
  }

  /**
   * A topic's entries after a position up to the head, a page at a time, into `into`; null when one of them is no
   * longer kept: the first entry found must link back to at or below where the read stands.
   */
  async #chain (topic: string, after: number, head: number, into: StoredEvent[]): Promise<StoredEvent[] | null> {
    for (let last = after; ;) {
      const entries = await this.#command(() => this.#client.xrange(this.#key(topic), `(${last}-0`, '+', 'COUNT', PAGE)) as Entry[]
      if (entries.length === 0) return into
      if (linkOf(entries[0]) > last) return null
      for (const entry of entries) {
        const event = fromEntry(topic, entry)
        if (event.seq > head) return into
        into.push(event)
      }
      if (entries.length < PAGE) return into
      last = into[into.length - 1].seq
    }
  }

  /**
   * A command that fails with FST_SSE_STORE_UNAVAILABLE when Redis does not answer within the timeout, instead of
   * waiting in the client's offline queue for as long as Redis is away.
   */
  async #command<T> (send: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const client = this.#client
    if (client.status !== 'ready' && client.status !== 'wait') await this.#timed(this.#whenReady(), 'command')
    const sent = send().catch(storeError)
    return await this.#timed(sent, 'command')
  }

  #whenReady (): Promise<void> {
    this.#ready ??= new Promise<void>(resolve => {
      this.#client.once('ready', () => {
        this.#ready = undefined
        resolve()
      })
    })
    return this.#ready
  }

  /** The promise, or FST_SSE_STORE_UNAVAILABLE once the timeout passed (a late failure then has nobody to tell). */
  async #timed<T> (promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FST_SSE_STORE_UNAVAILABLE(`no answer from Redis within ${this.#timeout} ms (${what}, status ${this.#client.status})`)), this.#timeout)
    })
    promise.catch(noop)
    try {
      return await Promise.race([promise, expired])
    } finally {
      clearTimeout(timer)
    }
  }

  #see (position: number): number {
    if (position > this.#seen) this.#seen = position
    return position
  }

  readonly #onError = (err: Error): void => {
    this.#log?.warn({ err }, 'event hub Redis connection error')
  }
}

const noop = (): void => {}

/** Redis's own answers (a script error, say) as they are; a lost connection as the store being unavailable. */
function storeError (err: Error): never {
  if (err.name === 'ReplyError') throw err
  throw new FST_SSE_STORE_UNAVAILABLE(err.message)
}

/** A prefix without a hash tag gets one, so that every key of the store is in one Cluster slot. */
function prefixOf (prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix === '') throw new FST_SSE_INVALID_OPTION('prefix', 'expected a non-empty string')
  return /\{[^}]+\}/.test(prefix) ? prefix : `{${prefix}}`
}

function seqOf (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function field (fields: string[], name: string): string | undefined {
  for (let i = 4; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}

/** The append script writes m and d first, in that order, then e, i and g when given. */
function fromEntry (topic: string, [id, fields]: Entry): StoredEvent {
  return stored(topic, seqOf(id), field(fields, 'i'), field(fields, 'e'), fields[3], parseTags(field(fields, 'g')))
}

function linkOf ([, fields]: Entry): number {
  return Number(fields[1].slice(fields[1].indexOf(':') + 1))
}

function stored (topic: string, seq: number, id: string | undefined, event: string | undefined, data: string, tags: Tags | undefined): StoredEvent {
  return storedEvent(topic, seq, id ?? String(seq), event === '' ? undefined : event, data, tags)
}

function bySeq (a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq
}
