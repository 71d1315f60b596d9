import type { Redis } from 'ioredis'
import { FST_SSE_HUB_CLOSED, FST_SSE_STORE_GAP, FST_SSE_STORE_RESET, FST_SSE_STORE_UNAVAILABLE } from '../errors.js'
import { storedEvent, type StoredEvent, type StoreFailure, type StoreListener } from './store.js'
import { UNREADABLE_TAGS, type Tags } from '../filter.js'
import { storeLag } from '../diagnostics.js'

/** What the reader needs of its store: the command connection's reads, and where it reports. */
export interface ReaderHost {
  /** The head and the epoch, read on the command connection. */
  head: () => Promise<{ head: number, epoch: number }>
  /** A topic's entries after a position up to the head, in order; null when some of them are no longer kept. */
  chain: (topic: string, after: number, head: number) => Promise<StoredEvent[] | null>
  /** A position the instance saw (Redis below it lost writes). */
  see: (position: number) => void
  log: { warn: (details: object, message: string) => void }
}

/** The live reader's counters, for a dashboard: a reader falling behind shows here before clients notice. */
// A type, not an interface, so that it is a StoreStats (an interface has no index signature).
export type ReaderStats = {
  /** Topics this instance listens to (one Redis channel each). */
  topics: number
  /** Events handed to this instance's listeners (live and caught up). */
  delivered: number
  /** Milliseconds from the newest delivered event's append (Redis's clock) to its delivery here. */
  lagMs: number
  /** Live messages waiting while the reader catches up after a reconnection. */
  waiting: number
  /** Times the live connection came back after it was lost (every reconnection is followed by a catch-up). */
  reconnections: number
  /** Events missed while the live connection was away and then read from the history, in order. */
  caughtUp: number
  /** Topics whose missed events were no longer kept: their listeners were failed (the hub closes them; clients resume). */
  gaps: number
}

interface Topic {
  readonly name: string
  readonly channel: string
  /** The position of the newest event delivered, or read past; -1 until the topic is subscribed and placed. */
  after: number
  readonly listeners: Map<StoreListener, StoreFailure | undefined>
  /** Live messages that came before the topic was placed: those after the head it was placed at are delivered. */
  early: Array<{ event: StoredEvent, prev: number }>
  readonly placed: Promise<void>
  place: (err?: Error) => void
}

/** Channels a SUBSCRIBE carries at most. */
const CHUNK = 10_000
/** How long a failed catch-up waits before it tries again (the connection being up). */
const RETRY_MS = 100

/**
 * The live path: one subscriber connection per instance, one channel per listened topic, each append published
 * there by the script that stored it. A channel costs the same whether the instance listens to 10 topics or 50,000,
 * and a message carries the event, so nothing is read per event. PUB/SUB drops messages when its connection goes
 * (or Redis cuts a slow subscriber): each message links to the topic's previous position, and after every
 * reconnection the reader reads what its topics missed from the history and delivers it in position order before
 * anything newer. What the history no longer has fails those topics' listeners, never skips silently.
 */
export class LiveReader {
  readonly #sub: Redis
  readonly #host: ReaderHost
  readonly #topics = new Map<string, Topic>()
  /** Topics waiting for their SUBSCRIBE. */
  readonly #fresh = new Set<Topic>()
  /** Channels whose last listener left, unsubscribed together at the end of the tick. */
  readonly #leaving = new Set<string>()
  /** Live messages (channel, message, …) held back while missed events are delivered (while `#holding`). */
  #held: string[] = []
  #holding = false
  #resubscribe = false
  #syncing = false
  #connected = false
  #closed = false
  /** The epoch (its first position) this instance reads in. */
  #epoch: number | undefined
  readonly #stats = { delivered: 0, lagMs: 0, reconnections: 0, caughtUp: 0, gaps: 0 }

  constructor (sub: Redis, host: ReaderHost) {
    this.#sub = sub
    this.#host = host
    sub.on('message', this.#onMessage)
    sub.on('ready', this.#onReady)
  }

  /** Adds a listener; resolves once every later append to the topic reaches it (its channel subscribed, placed). */
  listen (name: string, channel: string, listener: StoreListener, onFailure: StoreFailure | undefined): { placed: Promise<void>, stop: () => void } {
    let topic = this.#topics.get(channel)
    if (topic === undefined) {
      topic = newTopic(name, channel)
      this.#topics.set(channel, topic)
      this.#fresh.add(topic)
      this.#sync()
    }
    const listening = topic
    listening.listeners.set(listener, onFailure)
    return {
      placed: listening.placed,
      stop: () => {
        listening.listeners.delete(listener)
        if (listening.listeners.size === 0 && this.#topics.get(channel) === listening) this.#remove(listening)
      }
    }
  }

  stats (): ReaderStats {
    return { topics: this.#topics.size, waiting: this.#held.length / 2, ...this.#stats }
  }

  close (): void {
    this.#closed = true
    const err = new FST_SSE_HUB_CLOSED()
    for (const topic of this.#topics.values()) topic.place(err)
    this.#topics.clear()
    this.#fresh.clear()
    this.#sub.disconnect()
  }

  readonly #onMessage = (channel: string, message: string): void => {
    if (this.#holding) {
      this.#held.push(channel, message)
      return
    }
    const topic = this.#topics.get(channel)
    if (topic !== undefined) this.#receive(topic, message)
  }

  /** A live message: `position\nlink\nepoch\nms\nevent\nid\ntags\ndata` (see the APPEND script). */
  #receive (topic: Topic, message: string): void {
    const a = message.indexOf('\n')
    const b = message.indexOf('\n', a + 1)
    const c = message.indexOf('\n', b + 1)
    const d = message.indexOf('\n', c + 1)
    const e = message.indexOf('\n', d + 1)
    const f = message.indexOf('\n', e + 1)
    const g = message.indexOf('\n', f + 1)
    if (!this.#sameEpoch(Number(message.slice(b + 1, c)))) return
    const seq = Number(message.slice(0, a))
    const event = message.slice(d + 1, e)
    const id = message.slice(e + 1, f)
    const stored = storedEvent(topic.name, seq, id === '' ? String(seq) : id, event === '' ? undefined : event, message.slice(g + 1),
      g === f + 1 ? undefined : parseTags(message.slice(f + 1, g)))
    this.#stats.lagMs = Date.now() - Number(message.slice(c + 1, d))
    if (storeLag.hasSubscribers) storeLag.publish({ lag: this.#stats.lagMs })
    const prev = Number(message.slice(a + 1, b))
    if (topic.after < 0) topic.early.push({ event: stored, prev })
    else this.#live(topic, stored, prev)
  }

  #live (topic: Topic, event: StoredEvent, prev: number): void {
    if (event.seq <= topic.after) return
    // The connection never dropped since the topic was placed, so nothing can be missing: if something is, the
    // events after it cannot be put in order with what other topics delivered meanwhile.
    if (prev > topic.after) return this.#fail(topic, new FST_SSE_STORE_GAP(`topic ${JSON.stringify(topic.name)} missed positions after ${topic.after} on the live path`))
    this.#deliver(topic, event)
  }

  #deliver (topic: Topic, event: StoredEvent): void {
    topic.after = event.seq
    this.#host.see(event.seq)
    this.#stats.delivered++
    for (const listener of topic.listeners.keys()) listener(event)
  }

  readonly #onReady = (): void => {
    if (this.#connected) {
      this.#stats.reconnections++
      this.#host.log.warn({ topics: this.#topics.size }, 'event hub Redis reader reconnected; it catches up on what its topics missed')
    }
    this.#connected = true
    // Whatever was subscribed is gone with the old connection, and whatever was published meanwhile is missed.
    this.#resubscribe = true
    this.#sync()
  }

  /** Subscribes new topics, and after a reconnection every topic, catching up on what they missed. One at a time. */
  #sync (): void {
    if (this.#syncing || this.#closed) return
    this.#syncing = true
    this.#syncAll().catch(noop)
  }

  async #syncAll (): Promise<void> {
    while (!this.#closed && this.#sub.status === 'ready' && (this.#resubscribe || this.#fresh.size > 0)) {
      const all = this.#resubscribe
      const batch = all ? Array.from(this.#topics.values()) : Array.from(this.#fresh)
      this.#resubscribe = false
      this.#fresh.clear()
      try {
        await this.#subscribe(batch, all)
      } catch (err) {
        // Held messages are dropped: the next catch-up reads them from the history, in order with the rest.
        this.#holding = false
        this.#held = []
        if (all) this.#resubscribe = true
        else for (const topic of batch) if (this.#topics.get(topic.channel) === topic) this.#fresh.add(topic)
        if (this.#closed) return
        this.#host.log.warn({ err }, 'event hub Redis reader lost its connection; it catches up once Redis is back')
        await new Promise(resolve => setTimeout(resolve, RETRY_MS))
      }
    }
    // In the same step as the loop's last check: a topic listened from now on starts a sync of its own.
    this.#syncing = false
  }

  /**
   * SUBSCRIBE first, then read the head: every append after the head reaches the channel. After a reconnection,
   * live messages wait while what each topic missed up to the head is read and delivered in position order.
   */
  async #subscribe (batch: Topic[], all: boolean): Promise<void> {
    if (all) this.#holding = true
    for (let i = 0; i < batch.length; i += CHUNK) {
      await this.#whileConnected(this.#sub.subscribe(...batch.slice(i, i + CHUNK).map(topic => topic.channel)))
    }
    const { head, epoch } = await this.#host.head()
    if (!this.#sameEpoch(epoch)) return this.#release()
    if (all) await this.#catchUp(batch, head)
    for (const topic of batch) {
      if (topic.after >= 0 || this.#topics.get(topic.channel) !== topic) continue
      topic.after = head
      topic.place()
      for (const { event, prev } of topic.early) if (this.#topics.get(topic.channel) === topic) this.#live(topic, event, prev)
      topic.early = []
    }
    this.#release()
  }

  /** Reads what the topics missed up to the head and delivers it merged in position order. */
  async #catchUp (batch: Topic[], head: number): Promise<void> {
    const missed: Array<{ topic: Topic, event: StoredEvent }> = []
    await Promise.all(batch.map(async topic => {
      if (topic.after < 0 || topic.after >= head) return
      const events = await this.#host.chain(topic.name, topic.after, head)
      if (events !== null) {
        for (const event of events) missed.push({ topic, event })
      } else if (this.#topics.get(topic.channel) === topic) {
        this.#fail(topic, new FST_SSE_STORE_GAP(`topic ${JSON.stringify(topic.name)} missed events after position ${topic.after} that the history no longer keeps`))
      }
    }))
    missed.sort((a, b) => a.event.seq - b.event.seq)
    // Each read was after its topic's last delivery. A topic left meanwhile has no listener left to tell.
    for (const { topic, event } of missed) {
      this.#stats.caughtUp++
      this.#deliver(topic, event)
    }
  }

  /** Delivers the live messages held back meanwhile, in the order they came. */
  #release (): void {
    const held = this.#held
    this.#holding = false
    this.#held = []
    for (let i = 0; i < held.length; i += 2) this.#onMessage(held[i], held[i + 1])
  }

  /** A reply of the subscriber connection, or a failure as soon as that connection closes (its reply would never come). */
  async #whileConnected<T> (reply: Promise<T>): Promise<T> {
    let onClose: (() => void) | undefined
    const closed = new Promise<never>((_resolve, reject) => {
      onClose = () => reject(new FST_SSE_STORE_UNAVAILABLE('the reader\'s connection closed'))
      this.#sub.once('close', onClose)
    })
    reply.catch(noop)
    try {
      return await Promise.race([reply, closed])
    } finally {
      this.#sub.off('close', onClose as () => void)
    }
  }

  /** False, after failing every listener, when the history was lost: they must not read on as if nothing happened. */
  #sameEpoch (epoch: number): boolean {
    if (this.#epoch === undefined || this.#epoch === epoch) {
      this.#epoch = epoch
      return true
    }
    this.#epoch = epoch
    const err = new FST_SSE_STORE_RESET('a new epoch started; positions from before cannot be resumed')
    for (const topic of Array.from(this.#topics.values())) this.#fail(topic, err)
    return false
  }

  /** The topic cannot be delivered without a gap: it is dropped and its listeners told (the hub closes them). */
  #fail (topic: Topic, err: Error): void {
    if (err instanceof FST_SSE_STORE_GAP) this.#stats.gaps++
    this.#remove(topic)
    topic.place(err)
    for (const onFailure of topic.listeners.values()) onFailure?.(err)
  }

  #remove (topic: Topic): void {
    this.#topics.delete(topic.channel)
    this.#fresh.delete(topic)
    if (this.#leaving.size === 0) setImmediate(this.#unsubscribe)
    this.#leaving.add(topic.channel)
  }

  /** The channels nobody listens to any more (unless listened again meanwhile) leave in one UNSUBSCRIBE. */
  readonly #unsubscribe = (): void => {
    const channels = Array.from(this.#leaving).filter(channel => !this.#topics.has(channel))
    this.#leaving.clear()
    if (channels.length > 0 && this.#sub.status === 'ready') this.#sub.unsubscribe(...channels).catch(noop)
  }
}

const noop = (): void => {}

function newTopic (name: string, channel: string): Topic {
  let place!: (err?: Error) => void
  const placed = new Promise<void>((resolve, reject) => {
    place = err => { if (err === undefined) resolve(); else reject(err) }
  })
  placed.catch(noop)
  return { name, channel, after: -1, listeners: new Map(), early: [], placed, place }
}

/**
 * The tags of a stored event as Redis keeps them (JSON of an object the hub checked), or none; what cannot be read
 * as such (a foreign publish on the channel, a corrupt entry) is UNREADABLE_TAGS, which no filter lets through.
 */
export function parseTags (text: string | undefined): Tags | undefined {
  if (text === undefined || text === '') return undefined
  try {
    const tags: unknown = JSON.parse(text)
    if (typeof tags === 'object' && tags !== null && !Array.isArray(tags)) return tags as Tags
  } catch {}
  return UNREADABLE_TAGS
}
