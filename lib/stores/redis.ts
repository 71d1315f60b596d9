import { createHash } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { DEFAULT_HISTORY_AGE_MS, DEFAULT_HISTORY_SIZE } from '../constants.js'
import { FST_SSE_HUB_CLOSED, FST_SSE_INVALID_ID, FST_SSE_INVALID_OPTION, FST_SSE_STORE_RESET, FST_SSE_STORE_UNAVAILABLE } from '../errors.js'
import { APPEND, HORIZON } from './redis-scripts.js'
import {
  isPositionId, positiveInteger, type EventStore, type NewEvent, type Replay, type StoredEvent, type StoreFailure, type StoreListener
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

/** Entries one blocking read or one replay page returns at most. */
const PAGE = 512
/** A blocking read returns after this long without events, whatever happens. */
const BLOCK_MS = 5000
/** Checkpoints of the position clock, per key TTL: the precision of "older than the key TTL". */
const CLOCK_STEPS = 1024
const DEFAULT_KEY_TTL_MS = 24 * 60 * 60_000
const DEFAULT_TIMEOUT_MS = 3000

/** One script: EVALSHA, and EVAL when Redis does not have it (after a restart or a flush). */
class Script {
  readonly #source: string
  readonly #sha: string
  readonly #keys: number

  constructor (source: string, keys: number) {
    this.#source = source
    this.#sha = createHash('sha1').update(source).digest('hex')
    this.#keys = keys
  }

  async run (client: Redis, keys: string[], args: Array<string | number>): Promise<unknown> {
    const count = this.#keys < 0 ? keys.length : this.#keys
    try {
      return await client.evalsha(this.#sha, count, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
      return await client.eval(this.#source, count, ...keys, ...args)
    }
  }
}

const appendScript = new Script(APPEND, 4)
const horizonScript = new Script(HORIZON, -1)

interface Topic {
  readonly name: string
  readonly key: string
  /** The id after which the reader reads next: the last entry delivered. */
  after: string
  readonly listeners: Map<StoreListener, StoreFailure | undefined>
}

type Entry = [id: string, fields: string[]]
type Reply = Array<[key: string, entries: Entry[]]> | null

/**
 * A store on Redis Streams, shared by every server instance that uses the same Redis and prefix. Positions come
 * from one counter in Redis, assigned with the entry in one script, so they increase strictly across topics and
 * instances; one blocking reader per instance fans events out to its subscribers. See the README for the data
 * model, the epochs and the faults.
 */
export class RedisStore implements EventStore {
  readonly #client: Redis
  readonly #reader: Redis
  readonly #ownsClient: boolean
  readonly #prefix: string
  readonly #historySize: number
  readonly #historyAge: number
  readonly #keyTtl: number
  readonly #timeout: number
  readonly #log: RedisStoreSettings['log']
  readonly #topics = new Map<string, Topic>()
  /** The newest position this instance saw: Redis below it lost writes. */
  #seen = 0
  /** The epoch (its first position) this instance reads in. */
  #first: number | undefined
  #closed = false
  #readerId: number | undefined
  #reading = false
  /** Resolves the reader's wait for a first topic. */
  #wake: (() => void) | undefined
  #unblockTimer: NodeJS.Timeout | undefined
  readonly #loop: Promise<void>

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
    this.#log = options.log
    this.#ownsClient = client === undefined
    this.#client = client ?? (typeof connection === 'string' ? new Redis(connection) : new Redis(connection as RedisOptions))
    if (this.#ownsClient) this.#client.on('error', this.#onError)
    // Its own connection: a blocking read holds it. The reader sends only while it is connected and resends
    // nothing by itself: after a reconnection it reads on from the last entry it delivered.
    this.#reader = this.#client.duplicate({ maxRetriesPerRequest: null, autoResendUnfulfilledCommands: false, enableOfflineQueue: false })
    this.#reader.on('error', this.#onError)
    this.#reader.on('ready', this.#onReaderReady)
    this.#reader.on('close', this.#onReaderClose)
    this.#loop = this.#read()
  }

  async append (topic: string, event: NewEvent): Promise<StoredEvent> {
    const { id, data } = event
    if (id !== undefined && isPositionId(id)) throw new FST_SSE_INVALID_ID(`${JSON.stringify(id)} is a decimal integer, which the store assigns`)
    const result = await this.#command(() => appendScript.run(this.#client, [this.#meta, this.#clock, this.#key(topic), this.#idKey(id ?? '')], [
      this.#seen, this.#historySize, this.#historyAge, this.#keyTtl, Math.ceil(this.#keyTtl / CLOCK_STEPS), data, event.event ?? '', id ?? ''
    ])) as [string, string] | null
    if (result === null) throw new FST_SSE_INVALID_ID(`${JSON.stringify(id)} is already in the history`)
    const seq = this.#see(Number(result[0]))
    return stored(topic, seq, id, event.event, data)
  }

  async readAfter (topics: readonly string[], lastEventId: string | undefined): Promise<Replay> {
    const first = await this.#horizon(topics, lastEventId)
    const { head, epoch } = first
    if (lastEventId === undefined) return { events: [], head }
    const after = first.after
    if (after === undefined || after > head || after < epoch - 1 || first.lost.some(lost => lost > after)) return { events: null, head }
    const events: StoredEvent[] = []
    for (const topic of topics) await this.#page(topic, after, head, events)
    // Trimmed while the pages were read, or the history lost meanwhile: what was read may have a gap.
    const again = await this.#horizon(topics, undefined)
    if (again.epoch !== epoch || again.lost.some(lost => lost > after)) return { events: null, head: again.head }
    if (topics.length > 1) events.sort(bySeq)
    return { events, head }
  }

  async listen (topic: string, listener: StoreListener, onFailure?: StoreFailure): Promise<() => Promise<void>> {
    let entry = this.#topics.get(topic)
    if (entry === undefined) {
      // Read from the head on: every later append reaches the listener.
      const { head } = await this.#horizon([], undefined)
      entry = this.#topics.get(topic)
      if (entry === undefined) {
        entry = { name: topic, key: this.#key(topic), after: `${head}-0`, listeners: new Map() }
        this.#topics.set(topic, entry)
        this.#interrupt()
      }
    }
    const listening = entry
    listening.listeners.set(listener, onFailure)
    return async () => {
      listening.listeners.delete(listener)
      if (listening.listeners.size === 0 && this.#topics.get(topic) === listening) this.#topics.delete(topic)
    }
  }

  /** Stops the reader and closes the connections the store opened; a client that was handed in stays open. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#unblockTimer)
    this.#wake?.()
    this.#reader.disconnect()
    if (this.#ownsClient) this.#client.disconnect()
    await this.#loop
    this.#topics.clear()
  }

  get #meta (): string { return `${this.#prefix}:meta` }
  get #clock (): string { return `${this.#prefix}:clock` }
  #key (topic: string): string { return `${this.#prefix}:t:${topic}` }
  #idKey (id: string): string { return `${this.#prefix}:id:${id}` }

  /** The head, the epoch, the position of a publisher's id, and per topic the newest position it lost. */
  async #horizon (topics: readonly string[], lastEventId: string | undefined): Promise<{ head: number, epoch: number, after: number | undefined, lost: number[] }> {
    const pubId = lastEventId !== undefined && !isPositionId(lastEventId) ? lastEventId : ''
    const reply = await this.#command(() => horizonScript.run(this.#client, [this.#meta, this.#clock, this.#idKey(pubId), ...topics.map(topic => this.#key(topic))],
      [this.#seen, this.#historySize, this.#historyAge, this.#keyTtl, pubId])) as string[]
    const head = this.#see(Number(reply[0]))
    const epoch = Number(reply[1])
    const after = lastEventId === undefined ? undefined : pubId === '' ? Number(lastEventId) : reply[2] === '' ? undefined : Number(reply[2])
    return { head, epoch, after, lost: reply.slice(3).map(Number) }
  }

  /** Reads a topic's entries after a position up to the head, a page at a time. */
  async #page (topic: string, after: number, head: number, into: StoredEvent[]): Promise<void> {
    let from = `(${after}-0`
    for (;;) {
      const entries = await this.#command(() => this.#client.xrange(this.#key(topic), from, `${head}-0`, 'COUNT', PAGE)) as Entry[]
      for (const entry of entries) into.push(fromEntry(topic, entry))
      if (entries.length < PAGE) return
      from = `(${entries[entries.length - 1][0]}`
    }
  }

  /**
   * A command that fails with FST_SSE_STORE_UNAVAILABLE when Redis does not answer within the timeout, instead of
   * waiting in the client's offline queue for as long as Redis is away.
   */
  async #command<T> (send: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const client = this.#client
    let timer: NodeJS.Timeout | undefined
    let onReady: (() => void) | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FST_SSE_STORE_UNAVAILABLE(`no answer from Redis within ${this.#timeout} ms (status ${client.status})`)), this.#timeout)
    })
    try {
      if (client.status !== 'ready' && client.status !== 'wait') {
        await Promise.race([new Promise<void>(resolve => { onReady = resolve; client.once('ready', resolve) }), expired])
      }
      const sent = send().catch(storeError)
      sent.catch(noop) // when the timeout wins, a late failure has nobody to tell
      return await Promise.race([sent, expired])
    } finally {
      clearTimeout(timer)
      if (onReady !== undefined) client.off('ready', onReady)
    }
  }

  #see (position: number): number {
    if (position > this.#seen) this.#seen = position
    return position
  }

  /** The reader: one blocking XREAD over every listened topic, each after the last entry it delivered. */
  async #read (): Promise<void> {
    while (!this.#closed) {
      if (this.#topics.size === 0 || this.#reader.status !== 'ready') {
        await this.#idle()
        continue
      }
      const topics = Array.from(this.#topics.values())
      this.#reading = true
      try {
        this.#readerId ??= await this.#whileConnected(this.#reader.client('ID')) as number
        const reply = await this.#whileConnected(this.#reader.call('XREAD', 'COUNT', PAGE, 'BLOCK', BLOCK_MS, 'STREAMS',
          ...topics.map(topic => topic.key), ...topics.map(topic => topic.after))) as Reply
        if (reply !== null) this.#deliver(reply)
      } catch (err) {
        if (!this.#closed) this.#log?.warn({ err }, 'event hub Redis reader lost its connection; it reads on once Redis is back')
      } finally {
        this.#reading = false
      }
    }
  }

  /** Waits for a first topic, for the reader's connection, or for close(). */
  async #idle (): Promise<void> {
    await new Promise<void>(resolve => {
      const done = (): void => {
        this.#reader.off('ready', done)
        this.#wake = undefined
        resolve()
      }
      this.#wake = done
      this.#reader.once('ready', done)
    })
  }

  /** A reply of the reader's connection, or a failure as soon as that connection closes (its reply would never come). */
  async #whileConnected<T> (reply: Promise<T>): Promise<T> {
    let onClose: (() => void) | undefined
    const closed = new Promise<never>((_resolve, reject) => {
      onClose = () => reject(new FST_SSE_STORE_UNAVAILABLE('the reader\'s connection closed'))
      this.#reader.once('close', onClose)
    })
    reply.catch(noop)
    try {
      return await Promise.race([reply, closed])
    } finally {
      this.#reader.off('close', onClose as () => void)
    }
  }

  /** Hands a read's entries to the listeners in position order across topics. */
  #deliver (reply: NonNullable<Reply>): void {
    // A topic that filled its page may have more entries below another topic's newest: deliver only up to the
    // lowest full page's end, so that the order across topics holds; the rest is read again next time.
    let cutoff = Infinity
    for (const [, entries] of reply) {
      if (entries.length === PAGE) cutoff = Math.min(cutoff, seqOf(entries[entries.length - 1][0]))
    }
    const batch: Array<{ topic: Topic, event: StoredEvent, id: string, epoch: number }> = []
    for (const [key, entries] of reply) {
      const topic = this.#topicByKey(key)
      if (topic === undefined) continue
      for (const entry of entries) {
        const event = fromEntry(topic.name, entry)
        if (event.seq > cutoff) break
        batch.push({ topic, event, id: entry[0], epoch: Number(field(entry[1], 'f')) })
      }
    }
    batch.sort((a, b) => a.event.seq - b.event.seq)
    for (const { topic, event, id, epoch } of batch) {
      if (!this.#sameEpoch(epoch)) return
      topic.after = id
      this.#see(event.seq)
      for (const listener of topic.listeners.keys()) listener(event)
    }
  }

  /** The listened topic a key of the read belongs to (none for a topic stopped while the read was out). */
  #topicByKey (key: string): Topic | undefined {
    return this.#topics.get(key.slice(this.#key('').length))
  }

  /** False, after failing every listener, when the history was lost: they must not read on as if nothing happened. */
  #sameEpoch (epoch: number): boolean {
    if (this.#first === undefined || this.#first === epoch) {
      this.#first = epoch
      return true
    }
    this.#first = epoch
    const err = new FST_SSE_STORE_RESET('a new epoch started; positions from before cannot be resumed')
    const topics = Array.from(this.#topics.values())
    this.#topics.clear()
    for (const topic of topics) for (const onFailure of topic.listeners.values()) onFailure?.(err)
    return false
  }

  /** After every reconnection: a Redis that lost the history while the reader was away must not be read on from. */
  readonly #onReaderReady = (): void => {
    this.#horizon([], undefined).then(({ epoch }) => this.#sameEpoch(epoch), (err: unknown) => {
      this.#log?.warn({ err }, 'event hub Redis store could not check its epoch after a reconnection')
    })
  }

  readonly #onReaderClose = (): void => {
    this.#readerId = undefined
  }

  readonly #onError = (err: Error): void => {
    this.#log?.warn({ err }, 'event hub Redis connection error')
  }

  /** A new topic: the blocking read must start again to include it. */
  #interrupt (): void {
    if (this.#wake !== undefined) return this.#wake()
    if (!this.#reading || this.#readerId === undefined) return
    const readerId = this.#readerId
    // CLIENT UNBLOCK can reach Redis before the XREAD it should end: try again until the read has returned.
    const unblock = (tries: number): void => {
      this.#client.client('UNBLOCK', readerId).then(done => {
        if (done === 0 && this.#reading && tries > 0 && !this.#closed) this.#unblockTimer = setTimeout(unblock, 2, tries - 1)
      }, noop)
    }
    unblock(50)
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
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}

function fromEntry (topic: string, [id, fields]: Entry): StoredEvent {
  // The append script writes data into every entry.
  return stored(topic, seqOf(id), field(fields, 'i'), field(fields, 'e'), field(fields, 'd') as string)
}

function stored (topic: string, seq: number, id: string | undefined, event: string | undefined, data: string): StoredEvent {
  return event === undefined || event === ''
    ? { topic, seq, id: id ?? String(seq), data }
    : { topic, seq, id: id ?? String(seq), event, data }
}

function bySeq (a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq
}
