import type { FastifyBaseLogger } from 'fastify'
import { hubPublish, type CloseReason } from './diagnostics.js'
import { encodeFields, encodeId, encodeMessage, jsonData, type EncodedMessage } from './encode.js'
import {
  FST_SSE_ALREADY_SUBSCRIBED, FST_SSE_HUB_CLOSED, FST_SSE_INVALID_FIELD, FST_SSE_INVALID_ID, FST_SSE_INVALID_OPTION, FST_SSE_INVALID_TOPIC
} from './errors.js'
import { isPositionId, type EventStore, type NewEvent, type Replay, type StoreFailure, type StoredEvent, type StoreListener, type StoreStats } from './stores/store.js'
import { checkTags, compileFilter, type TagFilter } from './filter.js'
import { checkPresence, PresenceBook, type Presence, type PresenceOption } from './presence.js'
import { Audience, HubWriter, type Subscription } from './hub-writer.js'
import { serializeEvent, type EventSerializers } from './schema-events.js'
import { EventStream, kHolder, kIdle, kRelease, type EventMap, type Holder } from './stream.js'

export interface PublishOptions {
  /** The event type; clients dispatch the event under it. */
  event?: string
  /** Your own id for the event (unique in the history, not a decimal integer); by default the hub assigns one. */
  id?: string
  /**
   * Tags that subscribers' filters test (`{ team: 'a' }`: up to 32 string values; one whose value is undefined is
   * left out); kept and delivered with the event through any store. An event without tags passes only filters that
   * hold for no tags (`not` of a tag, say).
   */
  tags?: Readonly<Record<string, string | undefined>>
}

export interface SubscribeOptions {
  /** Where to resume from; by default the stream's Last-Event-ID header. */
  lastEventId?: string | number
  /**
   * Which events of its topics the stream gets, by their tags: `{ tag, eq }`, `{ tag, in }`, `{ and }`, `{ or }`,
   * `{ not }`. The server's to set, never the client's: events it rejects are never written to the stream, live, in
   * a replay or after a resync. FST_SSE_INVALID_FILTER for a filter it cannot check.
   */
  filter?: TagFilter
  /**
   * Who the subscriber is, listed by `presence()` on each of its topics (`{ id, info? }`: an id of up to 128
   * characters, info up to 1 KiB as JSON), or `'count'` to be counted only. FST_SSE_INVALID_PRESENCE else.
   */
  presence?: PresenceOption
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
  /** Streams opened on this instance since the start. */
  opened: number
  /** Streams ended on this instance since the start, by reason (see CloseReason). */
  closed: Readonly<Record<CloseReason, number>>
  /** Frames written to this instance's streams (events, comments, heartbeats), and their bytes on the wire (compressed). */
  sent: { messages: number, bytes: number }
  /** The store's own counters, when it keeps any (the Redis store: its reader's lag, reconnections and gaps). */
  store?: StoreStats
}

/** The instance's stream counts, kept by the registry. */
export interface StreamCounters {
  readonly size: number
  readonly cutOff: number
  readonly endedByAge: number
  readonly endedByShutdown: number
  readonly opened: number
  readonly closed: Readonly<Record<CloseReason, number>>
  readonly sent: { messages: number, readonly bytes: number }
}

export interface HubSettings {
  store: EventStore
  log: FastifyBaseLogger
  resyncEvent: string
  /** How many live events may wait for one subscriber while its replay is written, before it is cut off. */
  maxPending: number
  counters: StreamCounters
  /** The serializers of the declared events (`hub.events`), compiled on first use; undefined when none are declared. */
  serializers?: (() => EventSerializers) | undefined
  /** How long an instance's presence entries live in a shared store, and whether joins and leaves are published. */
  presence: { ttl: number, announce: boolean }
}

interface Topic {
  readonly subscribers: Audience
  /** The store's delivery to this topic: resolves to the function that stops it. */
  listening: Promise<() => Promise<void>>
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
  readonly #writer: HubWriter
  readonly #presence: PresenceBook
  readonly #announce: boolean
  #published = 0
  #closed = false
  /** The last position frame made for idle filtered subscribers: those at the same position share it. */
  #idFrame: { position: number, frame: EncodedMessage | undefined } = { position: -1, frame: undefined }

  constructor (settings: HubSettings) {
    this.#settings = settings
    this.#writer = new HubWriter({
      subscribers: name => this.#topics.get(name)?.subscribers,
      unsubscribe: stream => { this.unsubscribe(stream) },
      current: subscription => this.#isCurrent(subscription),
      maxPending: settings.maxPending,
      hub: this,
      sent: settings.counters.sent
    })
    const { ttl, announce } = settings.presence
    this.#announce = announce
    this.#presence = new PresenceBook(settings.store.presence?.(ttl), Math.ceil(ttl / 3), err => {
      settings.log.warn({ err }, 'event hub store failed to write presence; the next renewal writes it again')
    })
  }

  /**
   * Publishes an event to a topic; resolves with its id once the store kept it. With a store that delivers as it
   * appends (the in-memory one), every live subscriber's stream holds the event by then, ahead of anything written to
   * it afterwards; it leaves at the end of the tick, with the tick's other events.
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
    const tags = checkTags(options.tags)
    const stored: NewEvent = event === undefined || event === '' ? { data, id } : { data, event, id }
    if (tags !== undefined) stored.tags = tags
    return this.#append(topic, stored)
  }

  /**
   * Publishes a typed JSON event: data is JSON.stringify(payload), or, when the hub declares its events
   * (`hub.events`), the payload serialized by the event's schema; FST_SSE_INVALID_EVENT for an event it does not
   * declare or a payload the schema refuses, before anything is kept.
   */
  send<E extends keyof Events & string> (topic: string, event: E, payload: Events[E], options: Omit<PublishOptions, 'event'> = {}): Promise<string> {
    const serializers = this.#settings.serializers?.()
    const data = serializers === undefined ? jsonData(payload) : serializeEvent(serializers, event, payload)
    return this.publish(topic, data, { id: options.id, tags: options.tags, event })
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
    const filter = options.filter === undefined ? null : compileFilter(options.filter)
    const member = options.presence === undefined ? undefined : checkPresence(options.presence)
    if (stream.closed) return Promise.resolve(false)
    const resumeFrom = options.lastEventId ?? stream.lastEventId
    const presence = member === undefined ? null : { key: this.#presence.join(names, member), member, announced: false }
    const subscription: Subscription = { stream, topics: names, filter, position: 0, start: 0, live: false, pending: null, stamp: 0, presence }
    this.#subscriptions.set(stream, subscription)
    stream[kHolder] = this
    const listening = names.map(name => this.#join(name, subscription))
    // An empty id means no id, as an empty Last-Event-ID header does.
    const started = this.#start(subscription, listening, resumeFrom === undefined || resumeFrom === '' ? undefined : String(resumeFrom))
    if (presence === null || presence.member === null || !this.#announce) return started
    // Announced once live, so that the member gets its own join like everyone else; a stream that never got there leaves unannounced.
    return started.then(live => {
      if (live && this.#isCurrent(subscription)) {
        presence.announced = true
        this.#announceMember(names, 'join', presence.member as string)
      }
      return live
    })
  }

  /** Takes a stream out of its topics (it stays open). False when it was not subscribed. */
  unsubscribe (stream: EventStream<any, any>): boolean {
    const subscription = this.#subscriptions.get(stream)
    if (subscription === undefined) return false
    this.#subscriptions.delete(stream)
    stream[kHolder] = undefined
    for (const name of subscription.topics) this.#leave(name, subscription)
    const { presence } = subscription
    if (presence !== null) {
      this.#presence.leave(subscription.topics, presence.key)
      if (presence.announced) this.#announceMember(subscription.topics, 'leave', presence.member as string)
    }
    return true
  }

  /**
   * Who is on a topic: the subscribers that carry a presence, on every instance sharing the store when it keeps
   * presence (the Redis store), else on this one. `count` counts streams, listed or counted; `members` lists each id
   * once with its number of streams.
   */
  presence (topic: string): Promise<Presence> {
    checkTopic(topic)
    return this.#presence.read(topic, true)
  }

  /** How many streams with a presence are on a topic, without listing them (cheap on a topic of many thousands). */
  presenceCount (topic: string): Promise<number> {
    checkTopic(topic)
    return this.#presence.read(topic, false).then(presence => presence.count)
  }

  stats (): HubStats {
    const subscribers: Record<string, number> = Object.create(null)
    for (const [name, topic] of this.#topics) subscribers[name] = topic.subscribers.size
    const { size, cutOff, endedByAge, endedByShutdown, opened, closed, sent } = this.#settings.counters
    const stats: HubStats = {
      openStreams: size,
      subscribers,
      published: this.#published,
      delivered: this.#writer.delivered,
      cutOff,
      endedByAge,
      endedByShutdown,
      opened,
      closed: { ...closed },
      sent: { messages: sent.messages, bytes: sent.bytes }
    }
    const store = this.#settings.store.stats?.()
    if (store !== undefined) stats.store = store
    return stats
  }

  /** Closes the store. Streams were closed before (in preClose), which took them out of their topics. */
  async close (): Promise<void> {
    this.#closed = true
    await this.#presence.close()
    await this.#settings.store.close()
  }

  /** A listed member's join or leave, published on its topics when the hub announces them; a failure is logged. */
  #announceMember (topics: readonly string[], event: 'join' | 'leave', member: string): void {
    if (this.#closed) return
    for (const topic of topics) {
      this.#append(topic, { data: member, event }).catch((err: unknown) => {
        this.#settings.log.warn({ err, topic, event }, 'event hub failed to publish a presence event')
      })
    }
  }

  async #append (topic: string, event: NewEvent): Promise<string> {
    if (this.#closed) throw new FST_SSE_HUB_CLOSED()
    const started = hubPublish.hasSubscribers ? performance.now() : -1
    const stored = await this.#settings.store.append(topic, event)
    if (started >= 0 && hubPublish.hasSubscribers) hubPublish.publish({ hub: this, topic, id: stored.id, duration: performance.now() - started })
    // A store that delivered while appending (the in-memory one) left the event with the writer, which writes it at
    // the end of the tick with the tick's other events: a loop of awaited publishes goes out as one write per socket.
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
    subscription.position = subscription.start = replay.head
    return this.#goLive(subscription)
  }

  /** Writes the replay, waiting whenever the socket is full, so that a long replay never crosses the buffer bound. */
  async #replay (subscription: Subscription, events: StoredEvent[]): Promise<boolean> {
    const { filter } = subscription
    for (const event of events) {
      if (!this.#isCurrent(subscription)) return false
      if (filter !== null && !filter.test(event.tags)) continue
      const written = subscription.stream.write(this.#writer.frame(event))
      this.#writer.delivered++
      if (!(await written)) return false
    }
    return this.#isCurrent(subscription)
  }

  #goLive (subscription: Subscription): boolean {
    const pending = subscription.pending
    subscription.pending = null
    subscription.live = true
    if (pending !== null) this.#writer.goLive(subscription, pending)
    return this.#isCurrent(subscription)
  }

  /** Something else is written to a subscriber's stream: what the writer holds for it goes first. */
  [kRelease] (stream: EventStream<any, any>): void {
    if (!this.#writer.idle) this.#writer.release(this.#subscriptions.get(stream) as Subscription)
  }

  /**
   * At a heartbeat, an idle filtered subscriber that its filter kept from newer events is sent a position past them
   * (`id: <position>`, no event) instead of the comment, so that its Last-Event-ID moves on: a subscriber whose
   * filter lets little through resumes from where it was, not from an event the history dropped. The position is,
   * over its topics, the oldest of each topic's newest event delivered (or the head it subscribed at, if later): a
   * store delivers each topic in position order, so every event of its topics up to there was handled for it,
   * written or passed over.
   */
  [kIdle] (stream: EventStream<any, any>): EncodedMessage | undefined {
    const subscription = this.#subscriptions.get(stream)
    if (subscription === undefined || subscription.filter === null || !subscription.live) return undefined
    // What the tick holds for it goes first: the position sent is past it.
    if (!this.#writer.idle) this.#writer.release(subscription)
    let at = Infinity
    for (const name of subscription.topics) at = Math.min(at, Math.max(subscription.start, (this.#topics.get(name) as Topic).subscribers.last))
    if (at <= subscription.position) return undefined
    subscription.position = at
    if (this.#idFrame.position !== at) this.#idFrame = { position: at, frame: encodeId(String(at)) }
    return this.#idFrame.frame
  }

  #resyncFrame (lastEventId: string | undefined, topics: readonly string[], head: number): EncodedMessage {
    return encodeMessage(JSON.stringify({ lastEventId, topics }), { id: String(head), event: this.#settings.resyncEvent })
  }

  #join (name: string, subscription: Subscription): Promise<unknown> {
    let topic = this.#topics.get(name)
    if (topic === undefined) {
      const subscribers = new Audience()
      const listening = listen(this.#settings.store, name, event => { this.#writer.dispatch(subscribers, event) }, err => this.#fail(name, subscribers, err))
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
