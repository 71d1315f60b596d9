import type { FastifyBaseLogger } from 'fastify'
import { encodeFields, encodeId, encodeMessage, jsonData, type EncodedMessage } from './encode.js'
import {
  FST_SSE_ALREADY_SUBSCRIBED, FST_SSE_HUB_CLOSED, FST_SSE_INVALID_FIELD, FST_SSE_INVALID_ID, FST_SSE_INVALID_OPTION, FST_SSE_INVALID_TOPIC
} from './errors.js'
import { isPositionId, type EventStore, type NewEvent, type Replay, type StoreFailure, type StoredEvent, type StoreListener, type StoreStats } from './stores/store.js'
import { EventStream, kCutOff, kHolder, kRelease, type EventMap, type Holder } from './stream.js'

export interface PublishOptions {
  /** The event type; clients dispatch the event under it. */
  event?: string
  /** Your own id for the event (unique in the history, not a decimal integer); by default the hub assigns one. */
  id?: string
}

export interface SubscribeOptions {
  /** Where to resume from; by default the stream's Last-Event-ID header. */
  lastEventId?: string | number
}

/** Counters for operators; a snapshot. */
export interface HubStats {
  /** Event streams open on the instance, subscribed or not. */
  openStreams: number
  /** Subscribed streams per topic (topics with no subscriber are not listed). */
  subscribers: Record<string, number>
  /** Events published through this hub. */
  published: number
  /** Frames handed to subscribers' write queues, replayed or live. */
  delivered: number
  /** Streams cut off because their client was too slow (on this instance, subscribed or not). */
  cutOff: number
  /** Streams ended at maxStreamAge (on this instance, subscribed or not). */
  endedByAge: number
  /** Streams ended by the server's shutdown (on this instance, subscribed or not). */
  endedByShutdown: number
  /** The store's own counters, when it keeps any (the Redis store: its reader's lag, reconnections and gaps). */
  store?: StoreStats
}

export interface HubSettings {
  store: EventStore
  log: FastifyBaseLogger
  resyncEvent: string
  /** How many live events may wait for one subscriber while its replay is written, before it is cut off. */
  maxPending: number
  counters: { readonly size: number, readonly cutOff: number, readonly endedByAge: number, readonly endedByShutdown: number }
}

interface Subscription {
  readonly stream: EventStream<any, any>
  readonly topics: readonly string[]
  /** The newest position written to the stream: live events at or below it were replayed already. */
  position: number
  /** False while the replay is written: live events wait in `pending` meanwhile (null while none waits). */
  live: boolean
  pending: StoredEvent[] | null
  /** The last flush that handled this subscriber (see kFlushTick). */
  stamp: number
}

interface Topic {
  readonly subscribers: Set<Subscription>
  /** The store's delivery to this topic: resolves to the function that stops it. */
  listening: Promise<() => Promise<void>>
}

const kFlushTick = Symbol('fastify-event-stream.flush-tick')
/** A tick's events for one subscriber are joined into frames of up to this many bytes (one write each). */
const JOIN_BYTES = 64 * 1024

/** A list of events of one tick, and the frames that carry them. */
interface Batch {
  readonly events: StoredEvent[]
  readonly frames: EncodedMessage[]
}

function joinFrames (frames: EncodedMessage[]): EncodedMessage {
  return (frames.length === 1 ? frames[0] : Buffer.concat(frames)) as EncodedMessage
}

/**
 * Publish to topics, subscribe streams to them. Each event is validated and encoded once, and the same bytes go to
 * every subscriber's write queue; a subscriber that brings a Last-Event-ID first gets what it missed, in order,
 * then live events, with no gap and no duplicate.
 */
export class EventHub<Events extends EventMap = EventMap> implements Holder {
  readonly #settings: HubSettings
  readonly #topics = new Map<string, Topic>()
  readonly #subscriptions = new Map<EventStream<any, any>, Subscription>()
  /** The store's deliveries of this tick: a topic's subscribers, then the event, and so on (see #dispatch). */
  #tick: Array<Set<Subscription> | StoredEvent> = []
  /** Marks the subscribers a flush of several events has handled (a subscriber of several topics is met once for each). */
  #stamp = 0
  /** True while a flush writes: the hub's own writes release nothing. */
  #flushing = false
  /** Each stored event is encoded once, for every live subscriber and every replay that includes it. */
  readonly #frames = new WeakMap<StoredEvent, EncodedMessage>()
  #published = 0
  #delivered = 0
  #closed = false

  constructor (settings: HubSettings) {
    this.#settings = settings
  }

  /**
   * Publishes an event to a topic; resolves with its id once the store kept it (the subscribers have it by then).
   * Throws FST_SSE_INVALID_TOPIC, FST_SSE_INVALID_FIELD or FST_SSE_INVALID_ID for bad input, before anything is kept.
   */
  publish (topic: string, data: string, options: PublishOptions = {}): Promise<string> {
    checkTopic(topic)
    if (typeof data !== 'string') throw new FST_SSE_INVALID_FIELD('hub data must be a string')
    const { event, id } = options
    if (id !== undefined && typeof id !== 'string') throw new FST_SSE_INVALID_FIELD('a hub id must be a string')
    encodeFields({ id, event })
    if (id !== undefined && (id === '' || isPositionId(id))) {
      throw new FST_SSE_INVALID_ID(`${JSON.stringify(id)}: a publisher's id must not be empty or a decimal integer (the store assigns those)`)
    }
    return this.#append(topic, event === undefined || event === '' ? { data, id } : { data, event, id })
  }

  /** Publishes a typed JSON event: data is JSON.stringify(payload). */
  send<E extends keyof Events & string> (topic: string, event: E, payload: Events[E], options: Omit<PublishOptions, 'event'> = {}): Promise<string> {
    return this.publish(topic, jsonData(payload), { id: options.id, event })
  }

  /**
   * Subscribes a stream to topics. With a last event id (the option, else the stream's Last-Event-ID header) the
   * stream first gets every later event of its topics, or a resync event when that id cannot be resumed from;
   * without one, a frame that carries the current position, so that a reconnect resumes from here. Resolves true
   * once the stream is live, false when it ended first. The stream leaves its topics when it ends, for any reason.
   */
  subscribe (stream: EventStream<any, any>, topics: string | readonly string[], options: SubscribeOptions = {}): Promise<boolean> {
    if (!(stream instanceof EventStream)) throw new FST_SSE_INVALID_OPTION('stream', 'subscribe() takes the stream that reply.sse() returned')
    const names = checkTopics(topics)
    if (this.#subscriptions.has(stream)) throw new FST_SSE_ALREADY_SUBSCRIBED()
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    if (stream.closed) return Promise.resolve(false)
    const resumeFrom = options.lastEventId ?? stream.lastEventId
    const subscription: Subscription = { stream, topics: names, position: 0, live: false, pending: null, stamp: 0 }
    this.#subscriptions.set(stream, subscription)
    stream[kHolder] = this
    const listening = names.map(name => this.#join(name, subscription))
    // An empty id means no id, as an empty Last-Event-ID header does.
    return this.#start(subscription, listening, resumeFrom === undefined || resumeFrom === '' ? undefined : String(resumeFrom))
  }

  /** Takes a stream out of its topics (it stays open). False when it was not subscribed. */
  unsubscribe (stream: EventStream<any, any>): boolean {
    const subscription = this.#subscriptions.get(stream)
    if (subscription === undefined) return false
    this.#subscriptions.delete(stream)
    stream[kHolder] = undefined
    for (const name of subscription.topics) this.#leave(name, subscription)
    return true
  }

  stats (): HubStats {
    const subscribers: Record<string, number> = Object.create(null)
    for (const [name, topic] of this.#topics) subscribers[name] = topic.subscribers.size
    const { size, cutOff, endedByAge, endedByShutdown } = this.#settings.counters
    const stats: HubStats = { openStreams: size, subscribers, published: this.#published, delivered: this.#delivered, cutOff, endedByAge, endedByShutdown }
    const store = this.#settings.store.stats?.()
    if (store !== undefined) stats.store = store
    return stats
  }

  /** Closes the store. Streams were closed before (in preClose), which took them out of their topics. */
  async close (): Promise<void> {
    this.#closed = true
    await this.#settings.store.close()
  }

  async #append (topic: string, event: NewEvent): Promise<string> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const stored = await this.#settings.store.append(topic, event)
    // A store that delivered while appending (the in-memory one): the subscribers have the event when this resolves.
    this[kFlushTick]()
    this.#published++
    return stored.id
  }

  async #start (subscription: Subscription, listening: Array<Promise<unknown>>, lastEventId: string | undefined): Promise<boolean> {
    let replay: Replay
    try {
      // Listening first, then reading: an event appended in between is in both, and the position check drops the copy.
      await Promise.all(listening)
      replay = await this.#settings.store.readAfter(subscription.topics, lastEventId)
    } catch (err) {
      if (!this.#isCurrent(subscription)) return false
      this.#settings.log.error({ err }, 'event hub store failed to subscribe a stream; closing it')
      subscription.stream.close()
      return false
    }
    if (!this.#isCurrent(subscription)) return false
    if (replay.events === null) {
      subscription.stream.write(this.#resyncFrame(lastEventId, subscription.topics, replay.head))
    } else if (lastEventId === undefined) {
      subscription.stream.write(encodeId(String(replay.head)))
    } else if (!(await this.#replay(subscription, replay.events))) {
      return false
    }
    subscription.position = replay.head
    return this.#goLive(subscription)
  }

  /** Writes the replay, waiting whenever the socket is full, so that a long replay never crosses the buffer bound. */
  async #replay (subscription: Subscription, events: StoredEvent[]): Promise<boolean> {
    for (const event of events) {
      if (!this.#isCurrent(subscription)) return false
      const written = subscription.stream.write(this.#frame(event))
      this.#delivered++
      if (!(await written)) return false
    }
    return this.#isCurrent(subscription)
  }

  #goLive (subscription: Subscription): boolean {
    const pending = subscription.pending
    subscription.pending = null
    subscription.live = true
    if (pending !== null) this.#write(subscription, pending, undefined)
    return this.#isCurrent(subscription)
  }

  /**
   * What the store delivers waits for the end of the tick (or for publish() to resolve), so that a tick's events
   * reach each socket as one write. Anything else written to a subscriber's stream meanwhile first has this hub
   * write what it holds for it (kRelease), so frames leave in the order they were written.
   */
  #dispatch (subscribers: Set<Subscription>, event: StoredEvent): void {
    if (this.#tick.length === 0) process.nextTick(flushTick, this)
    this.#tick.push(subscribers, event)
  }

  /**
   * Something else is written to a subscriber's stream: what this tick holds for it goes first. The flush passes
   * over these events again, and the subscriber's position (or its pending list) leaves them out then.
   */
  [kRelease] (stream: EventStream<any, any>): void {
    if (this.#tick.length === 0 || this.#flushing) return
    const subscription = this.#subscriptions.get(stream) as Subscription
    const tick = this.#tick
    const events: StoredEvent[] = []
    for (let i = 0; i < tick.length; i += 2) if ((tick[i] as Set<Subscription>).has(subscription)) events.push(tick[i + 1] as StoredEvent)
    if (events.length > 0) this.#hand(subscription, events, undefined)
  }

  /**
   * Writes the tick's events. One event goes to every subscriber as its one frame. Several go to each subscriber
   * joined in one frame, made once for every subscriber that gets the same events (all of a topic's, say): a batch
   * costs one write per socket, not one per event.
   */
  [kFlushTick] (): void {
    const tick = this.#tick
    if (tick.length === 0) return
    this.#tick = []
    this.#flushing = true
    try {
      this.#flush(tick)
    } finally {
      this.#flushing = false
    }
  }

  #flush (tick: Array<Set<Subscription> | StoredEvent>): void {
    if (tick.length === 2) {
      const event = tick[1] as StoredEvent
      const frame = this.#frame(event)
      let events: StoredEvent[] | undefined
      for (const subscription of tick[0] as Set<Subscription>) {
        // The common case, kept as short as the direct path: a live subscriber that has not had this event yet.
        if (subscription.live && event.seq > subscription.position && !subscription.stream.closed) {
          subscription.position = event.seq
          this.#delivered++
          subscription.stream.write(frame)
        } else {
          this.#hand(subscription, events ??= [event], [frame])
        }
      }
      return
    }
    const stamp = ++this.#stamp
    const byTopic = new Map<Set<Subscription>, StoredEvent[]>()
    for (let i = 0; i < tick.length; i += 2) {
      const subscribers = tick[i] as Set<Subscription>
      const events = byTopic.get(subscribers)
      if (events === undefined) byTopic.set(subscribers, [tick[i + 1] as StoredEvent])
      else events.push(tick[i + 1] as StoredEvent)
    }
    const joined = new Map<StoredEvent[] | string, Batch>()
    for (const [subscribers, events] of byTopic) {
      for (const subscription of subscribers) {
        // A subscriber of several topics is met once for each: it gets its events once, merged in position order.
        if (subscription.stamp === stamp) continue
        subscription.stamp = stamp
        const batch = subscription.topics.length === 1 ? this.#joined(joined, events, events) : this.#merged(joined, subscription, byTopic)
        this.#hand(subscription, batch.events, batch.frames)
      }
    }
  }

  /** The events of one list as frames of up to JOIN_BYTES each (usually one), made once per flush. */
  #joined (joined: Map<StoredEvent[] | string, Batch>, key: StoredEvent[] | string, events: StoredEvent[]): Batch {
    let batch = joined.get(key)
    if (batch === undefined) {
      batch = { events, frames: this.#framesOf(events) }
      joined.set(key, batch)
    }
    return batch
  }

  /**
   * Frames joined up to JOIN_BYTES: a batch goes to a socket in one write, yet the buffer bound still applies to
   * what a slow client would be sent (each joined frame is checked against it like any other).
   */
  #framesOf (events: StoredEvent[]): EncodedMessage[] {
    if (events.length === 1) return [this.#frame(events[0])]
    const frames: EncodedMessage[] = []
    let group: EncodedMessage[] = []
    let bytes = 0
    for (const event of events) {
      const frame = this.#frame(event)
      if (bytes > 0 && bytes + frame.length > JOIN_BYTES) {
        frames.push(joinFrames(group))
        group = []
        bytes = 0
      }
      group.push(frame)
      bytes += frame.length
    }
    frames.push(joinFrames(group))
    return frames
  }

  /** A subscriber of several topics: their events of the tick in position order, shared by the same topic set. */
  #merged (joined: Map<StoredEvent[] | string, Batch>, subscription: Subscription, byTopic: Map<Set<Subscription>, StoredEvent[]>): Batch {
    const key = subscription.topics.join('\n')
    const known = joined.get(key)
    if (known !== undefined) return known
    const lists: StoredEvent[][] = []
    for (const name of subscription.topics) {
      const mine = byTopic.get((this.#topics.get(name) as Topic).subscribers)
      if (mine !== undefined) lists.push(mine)
    }
    // Events of one of its topics only (a user's topic and a shared one, say): the topic's own frames, shared.
    if (lists.length === 1) return this.#joined(joined, lists[0], lists[0])
    const events = lists.flat().sort(bySeq)
    return this.#joined(joined, key, events)
  }

  /** A subscriber's events of the tick: written if it is live, kept while its replay is written. */
  #hand (subscription: Subscription, events: StoredEvent[], frames: EncodedMessage[] | undefined): void {
    // A stream of another registration ended without telling this hub: it leaves now.
    if (subscription.stream.closed) {
      this.unsubscribe(subscription.stream)
    } else if (subscription.live) {
      this.#write(subscription, events, frames)
    } else {
      const pending = subscription.pending ??= []
      // A released subscriber meets the same events again in the flush.
      for (const event of events) if (pending.length === 0 || event.seq > pending[pending.length - 1].seq) pending.push(event)
      if (pending.length > this.#settings.maxPending) {
        subscription.stream[kCutOff]('event stream client too slow: live events piled up behind its replay, closing it',
          { pendingEvents: pending.length, maxPending: this.#settings.maxPending })
      }
    }
  }

  /**
   * Writes events (in position order) to a live subscriber, leaving out those it has (a replay wrote them): all of
   * them as the frames given when it has none of them, else joined for it alone.
   */
  #write (subscription: Subscription, events: StoredEvent[], frames: EncodedMessage[] | undefined): void {
    let first = 0
    while (first < events.length && events[first].seq <= subscription.position) first++
    if (first === events.length) return
    const fresh = first === 0 ? events : events.slice(first)
    subscription.position = fresh[fresh.length - 1].seq
    this.#delivered += fresh.length
    for (const frame of first === 0 && frames !== undefined ? frames : this.#framesOf(fresh)) subscription.stream.write(frame)
  }

  #frame (event: StoredEvent): EncodedMessage {
    let frame = this.#frames.get(event)
    if (frame === undefined) {
      frame = encodeMessage(event.data, { id: event.id, event: event.event })
      this.#frames.set(event, frame)
    }
    return frame
  }

  #resyncFrame (lastEventId: string | undefined, topics: readonly string[], head: number): EncodedMessage {
    return encodeMessage(JSON.stringify({ lastEventId, topics }), { id: String(head), event: this.#settings.resyncEvent })
  }

  #join (name: string, subscription: Subscription): Promise<unknown> {
    let topic = this.#topics.get(name)
    if (topic === undefined) {
      const subscribers = new Set<Subscription>()
      const listening = listen(this.#settings.store, name, event => this.#dispatch(subscribers, event), err => this.#fail(name, subscribers, err))
      const created: Topic = { subscribers, listening }
      // A topic whose listening failed is forgotten, so that the next subscriber tries again.
      listening.catch(() => { if (this.#topics.get(name) === created) this.#topics.delete(name) })
      this.#topics.set(name, created)
      topic = created
    }
    topic.subscribers.add(subscription)
    return topic.listening
  }

  /** The store cannot deliver the topic without a gap: its subscribers' clients reconnect, and resume or resync. */
  #fail (name: string, subscribers: Set<Subscription>, err: Error): void {
    this.#settings.log.error({ err, topic: name, subscribers: subscribers.size }, 'event hub store failed to deliver a topic; closing its subscribers')
    for (const subscription of Array.from(subscribers)) subscription.stream.close()
  }

  /** The last subscriber out stops the store's delivery: a topic nobody reads costs nothing here. */
  #leave (name: string, subscription: Subscription): void {
    const topic = this.#topics.get(name)
    if (topic === undefined || !topic.subscribers.delete(subscription) || topic.subscribers.size > 0) return
    this.#topics.delete(name)
    // A failed listening was reported to its subscribers already; only a failure to stop is logged here.
    topic.listening.then(stop => stop(), noop).catch((err: unknown) => {
      this.#settings.log.error({ err }, 'event hub store failed to stop listening to a topic')
    })
  }

  #isCurrent (subscription: Subscription): boolean {
    return this.#subscriptions.get(subscription.stream) === subscription
  }
}

const noop = (): void => {}
function flushTick (hub: EventHub<any>): void {
  hub[kFlushTick]()
}

function bySeq (a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq
}

/** store.listen(), with a synchronous throw turned into a rejection like any other store failure. */
async function listen (store: EventStore, topic: string, listener: StoreListener, onFailure: StoreFailure): Promise<() => Promise<void>> {
  return await store.listen(topic, listener, onFailure)
}

function checkTopic (topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic === '') {
    throw new FST_SSE_INVALID_TOPIC(`expected a non-empty string, got ${topic === '' ? 'an empty string' : typeof topic}`)
  }
}

function checkTopics (topics: unknown): string[] {
  const list = typeof topics === 'string' ? [topics] : topics
  if (!Array.isArray(list) || list.length === 0) throw new FST_SSE_INVALID_TOPIC('subscribe() takes a topic or a non-empty array of topics')
  for (const topic of list) checkTopic(topic)
  return [...new Set<string>(list)]
}
