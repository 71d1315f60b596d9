import { hubDeliver } from './diagnostics.js'
import { encodeMessage, type EncodedMessage } from './encode.js'
import type { CompiledFilter } from './filter.js'
import type { StoredEvent } from './stores/store.js'
import { kCutOff, type EventStream } from './stream.js'

/** A stream's subscription to its topics, kept by the hub and written to by its writer. */
export interface Subscription {
  readonly stream: EventStream<any, any>
  readonly topics: readonly string[]
  /** Its filter on the events' tags: events it rejects are passed over (its position moves past them). */
  readonly filter: CompiledFilter | null
  /** The newest position written to the stream: live events at or below it were replayed already. */
  position: number
  /** The store's head when it subscribed: what its topics held up to there was replayed, or skipped with a resync. */
  start: number
  /** False while the replay is written: live events wait in `pending` meanwhile (null while none waits). */
  live: boolean
  pending: StoredEvent[] | null
  /** The last flush that handled this subscriber (see HubWriter#flush). */
  stamp: number
  /** Its entry in the topics' presence (its key, and its member's JSON unless only counted), or null. */
  readonly presence: { readonly key: string, readonly member: string | null, announced: boolean } | null
}

/**
 * A topic's subscribers. Those with a filter are also grouped by it (equal filters share a key), so that the writer
 * tests each filter once per event and visits only the subscribers that get it.
 */
export class Audience extends Set<Subscription> {
  /** The subscribers without a filter. */
  readonly plain = new Set<Subscription>()
  /** The subscribers with a filter, by the filter's key. */
  readonly groups = new Map<string, { readonly filter: CompiledFilter, readonly members: Set<Subscription> }>()
  /**
   * The position of the topic's newest event the store delivered: once the writer released what it holds for a
   * subscriber, every event of the topic up to it was handled for that subscriber (written, or passed over by its
   * filter), since a store delivers a topic in position order (see EventHub[kIdle]).
   */
  last = 0

  override add (subscription: Subscription): this {
    super.add(subscription)
    const { filter } = subscription
    if (filter === null) {
      this.plain.add(subscription)
    } else {
      let group = this.groups.get(filter.key)
      if (group === undefined) this.groups.set(filter.key, group = { filter, members: new Set() })
      group.members.add(subscription)
    }
    return this
  }

  override delete (subscription: Subscription): boolean {
    if (!super.delete(subscription)) return false
    const { filter } = subscription
    if (filter === null) {
      this.plain.delete(subscription)
    } else {
      const group = this.groups.get(filter.key) as { members: Set<Subscription> }
      group.members.delete(subscription)
      if (group.members.size === 0) this.groups.delete(filter.key)
    }
    return true
  }
}

/** What the writer asks of its hub. */
export interface WriterHost {
  /** The subscribers of a topic this instance reads. */
  subscribers: (topic: string) => Set<Subscription> | undefined
  /** Takes a stream that ended without telling the hub out of its topics. */
  unsubscribe: (stream: EventStream<any, any>) => void
  /** False once the subscription was taken out of its topics (or replaced by another subscribe of its stream). */
  current: (subscription: Subscription) => boolean
  /** How many live events may wait for one subscriber while its replay is written, before it is cut off. */
  readonly maxPending: number
  /** The hub, named in the diagnostics the writer publishes. */
  readonly hub: object
  /** The instance's count of messages sent, which counts a joined frame's events each. */
  readonly sent: { messages: number }
}

/** A tick's events for one subscriber are joined into frames of up to this many bytes (one write each). */
const JOIN_BYTES = 64 * 1024

/**
 * A fan-out that takes longer than this (ms) goes on in the next turn of the event loop, and so on, so that new
 * connections, requests and timers are served between its slices: a publish to 5,000 sockets is 35-70 ms of writes,
 * which would otherwise hold every other client of the instance (a refused connection's answer, say) that long.
 */
const SLICE_MS = 8
/** Subscribers visited between two looks at the clock. */
const CLOCK_EVERY = 32

/** The store's deliveries of a tick: a topic's subscribers, then the event, and so on (see HubWriter#dispatch). */
type Tick = Array<Set<Subscription> | StoredEvent>

/** A fan-out that ran out of its slice: the subscribers it has yet to visit, and what it does for each. */
interface Rest {
  /** The tick whose events these are: release() finds a subscriber's in it. */
  readonly tick: Tick
  readonly subscribers: Subscription[]
  next: number
  readonly visit: (subscription: Subscription) => void
}

/** A list of events of one tick, and the frames that carry them. */
interface Batch {
  readonly events: StoredEvent[]
  readonly frames: EncodedMessage[]
  /** The same events through subscribers' filters, by filter key, made once per flush. */
  filtered?: Map<string, Batch>
  /** Those filtered batches by a hash of the events they hold: filters that let the same events through share one. */
  results?: Map<number, Batch[]>
}

function joinFrames (frames: EncodedMessage[]): EncodedMessage {
  return (frames.length === 1 ? frames[0] : Buffer.concat(frames)) as EncodedMessage
}

function sameEvents (a: StoredEvent[], b: StoredEvent[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function bySeq (a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq
}

function flushTick (writer: HubWriter): void {
  writer.flush()
}

function resumeFanOut (writer: HubWriter): void {
  writer.resume()
}

/** A subscriber's events in a tick, in the tick's order (position order). */
function eventsFor (subscription: Subscription, tick: Tick, events: StoredEvent[]): void {
  for (let i = 0; i < tick.length; i += 2) if ((tick[i] as Set<Subscription>).has(subscription)) events.push(tick[i + 1] as StoredEvent)
}

/**
 * The hub's writing side. What the store delivers waits for the end of the tick, so that a tick's events (a loop of
 * publishes, awaited or not; a page the Redis reader read) reach each socket as one write: one frame per subscriber,
 * joined once for every subscriber that gets the same events. Anything else written to a subscriber's stream
 * meanwhile first has this writer write what it holds for it (release), so frames leave in the order they were
 * written. Each stored event is encoded once, for every live subscriber and every replay that includes it.
 *
 * A fan-out that runs longer than SLICE_MS stops there and goes on in the next turn of the event loop, with the
 * subscribers it has yet to visit; ticks that come meanwhile wait behind it (then go out as one), and a write to a
 * subscriber it has not reached yet releases its events first, as a write during a tick does.
 */
export class HubWriter {
  /** Frames handed to subscribers' write queues, replayed or live. */
  delivered = 0
  readonly #host: WriterHost
  /** The store's deliveries of this tick: a topic's subscribers, then the event, and so on (see dispatch). */
  #tick: Tick = []
  /** A fan-out that went past its slice, and the ticks that came while it waits for its next one (oldest first). */
  #rest: Rest | null = null
  #held: Tick[] = []
  /** Marks the subscribers a flush of several events has handled (a subscriber of several topics is met once for each). */
  #stamp = 0
  /** True while a flush writes: the writer's own writes release nothing. */
  #flushing = false
  readonly #frames = new WeakMap<StoredEvent, EncodedMessage>()

  constructor (host: WriterHost) {
    this.#host = host
  }

  /** An event the store delivered to a topic's subscribers: written at the end of the tick. */
  dispatch (subscribers: Audience, event: StoredEvent): void {
    subscribers.last = event.seq
    if (this.#tick.length === 0) process.nextTick(flushTick, this)
    this.#tick.push(subscribers, event)
  }

  /** True when nothing waits to be written (or the writer writes it now): a write to a stream has nothing to release. */
  get idle (): boolean {
    return (this.#tick.length === 0 && this.#rest === null) || this.#flushing
  }

  /**
   * Something else is written to a subscriber's stream: what this tick holds for it goes first. The flush passes
   * over these events again, and the subscriber's position (or its pending list) leaves them out then.
   */
  release (subscription: Subscription): void {
    const events: StoredEvent[] = []
    if (this.#rest !== null) {
      // (It may have had the fan-out's events already: its position leaves them out.)
      eventsFor(subscription, this.#rest.tick, events)
      for (const tick of this.#held) eventsFor(subscription, tick, events)
    }
    eventsFor(subscription, this.#tick, events)
    if (events.length > 0) this.#alone(() => { this.#hand(subscription, events, undefined) })
  }

  /**
   * Writes the tick's events. One event goes to every subscriber as its one frame. Several go to each subscriber
   * joined in one frame, made once for every subscriber that gets the same events (all of a topic's, say): a batch
   * costs one write per socket, not one per event.
   */
  flush (): void {
    // Called once per tick that had a delivery (see dispatch): the tick holds one at least.
    const tick = this.#tick
    this.#tick = []
    // Behind a fan-out that has yet to finish: after it.
    if (this.#rest !== null) {
      this.#held.push(tick)
      return
    }
    this.#writing(() => {
      if (tick.length === 2) this.#flushOne(tick)
      else this.#flushMany(tick)
    })
  }

  /** The next slice of a fan-out that went past its slice; then, once it is done, the ticks that waited for it. */
  resume (): void {
    this.#writing(() => {
      const rest = this.#rest as Rest
      const { subscribers, visit } = rest
      const started = performance.now()
      while (rest.next < subscribers.length) {
        const subscription = subscribers[rest.next++]
        // One that left meanwhile (or was cut off by this very fan-out) gets nothing more.
        if (this.#host.current(subscription)) visit(subscription)
        if (rest.next % CLOCK_EVERY === 0 && rest.next < subscribers.length && performance.now() - started > SLICE_MS) {
          setImmediate(resumeFanOut, this)
          return
        }
      }
      this.#rest = null
      if (this.#held.length > 0) {
        // As one tick: a topic's events in position order, each subscriber's in one write.
        const held = this.#held.length === 1 ? this.#held[0] : this.#held.flat()
        this.#held = []
        this.#flushMany(held)
      }
    })
  }

  #writing (write: () => void): void {
    this.#flushing = true
    const before = this.delivered
    try {
      write()
    } finally {
      this.#flushing = false
    }
    // A tick whose events reached nobody (their subscribers left, or had them by replay) is not a delivery.
    if (hubDeliver.hasSubscribers && this.delivered > before) hubDeliver.publish({ hub: this.#host.hub, deliveries: this.delivered - before })
  }

  /**
   * Visits the subscribers in the sets (each once, unless the visit skips repeats) until the slice is over; the rest
   * are visited in the next turns of the event loop (see resume).
   */
  #fanOut (tick: Tick, sets: Array<Set<Subscription>>, visit: (subscription: Subscription) => void): void {
    const started = performance.now()
    let count = 0
    for (let s = 0; s < sets.length; s++) {
      // An iterator of its own, so that the rest can be taken from where it stopped (a Set's has no return()).
      const members = sets[s].values()
      for (const subscription of members) {
        visit(subscription)
        if (++count % CLOCK_EVERY === 0 && performance.now() - started > SLICE_MS) {
          const subscribers = [...members]
          for (let r = s + 1; r < sets.length; r++) for (const other of sets[r]) subscribers.push(other)
          if (subscribers.length > 0) {
            this.#rest = { tick, subscribers, next: 0, visit }
            setImmediate(resumeFanOut, this)
          }
          return
        }
      }
    }
  }

  /** The events of a subscriber whose replay is written, once it is live. */
  goLive (subscription: Subscription, pending: StoredEvent[]): void {
    this.#alone(() => { this.#write(subscription, pending, undefined) })
  }

  /**
   * Writes for one subscriber outside a flush (release, a replay going live), as a flush writes: the writer's own
   * writes release nothing. What it holds for the subscriber is newer than what it writes then, and would go first.
   */
  #alone (write: () => void): void {
    this.#flushing = true
    try {
      write()
    } finally {
      this.#flushing = false
    }
  }

  frame (event: StoredEvent): EncodedMessage {
    let frame = this.#frames.get(event)
    if (frame === undefined) {
      frame = encodeMessage(event.data, { id: event.id, event: event.event })
      this.#frames.set(event, frame)
    }
    return frame
  }

  /** One event to the subscribers that get it (by their filter, if any). */
  #flushOne (tick: Tick): void {
    const audience = tick[0] as Audience
    const event = tick[1] as StoredEvent
    const frame = this.frame(event)
    const sets: Array<Set<Subscription>> = [audience.plain]
    // Each filter is tested once; the subscribers of those that reject the event are not visited at all.
    if (audience.groups.size > 0) {
      for (const { filter, members } of audience.groups.values()) if (filter.test(event.tags)) sets.push(members)
    }
    let events: StoredEvent[] | undefined
    this.#fanOut(tick, sets, subscription => {
      // The common case, kept as short as the direct path: a live subscriber that has not had this event yet.
      if (subscription.live && event.seq > subscription.position && !subscription.stream.closed) {
        subscription.position = event.seq
        this.delivered++
        subscription.stream.write(frame)
      } else {
        this.#hand(subscription, events ??= [event], [frame])
      }
    })
  }

  #flushMany (tick: Tick): void {
    const stamp = ++this.#stamp
    const byTopic = new Map<Set<Subscription>, StoredEvent[]>()
    for (let i = 0; i < tick.length; i += 2) {
      const subscribers = tick[i] as Set<Subscription>
      const events = byTopic.get(subscribers)
      if (events === undefined) byTopic.set(subscribers, [tick[i + 1] as StoredEvent])
      else events.push(tick[i + 1] as StoredEvent)
    }
    const joined = new Map<StoredEvent[] | string, Batch>()
    this.#fanOut(tick, [...byTopic.keys()], subscription => {
      // A subscriber of several topics is met once for each: it gets its events once, merged in position order.
      if (subscription.stamp === stamp) return
      subscription.stamp = stamp
      let batch: Batch
      if (subscription.topics.length === 1) {
        const events = byTopic.get(this.#host.subscribers(subscription.topics[0]) as Set<Subscription>) as StoredEvent[]
        batch = this.#joined(joined, events, events)
      } else {
        batch = this.#merged(joined, subscription, byTopic)
      }
      if (subscription.filter !== null) batch = this.#filtered(batch, subscription.filter)
      this.#hand(subscription, batch.events, batch.frames)
    })
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
   * The batch's events that a filter lets through, joined once for every subscriber with an equal filter, and once
   * for every filter that lets the same events through (one filter per user, say): the frames of each event are the
   * same bytes for every subscriber, filtered or not.
   */
  #filtered (batch: Batch, filter: CompiledFilter): Batch {
    const byFilter = batch.filtered ??= new Map()
    const known = byFilter.get(filter.key)
    if (known !== undefined) return known
    const all = batch.events
    const events: StoredEvent[] = []
    let hash = 0
    for (let i = 0; i < all.length; i++) {
      if (filter.test(all[i].tags)) {
        events.push(all[i])
        hash = (Math.imul(hash, 31) + i + 1) | 0
      }
    }
    let made: Batch | undefined = events.length === all.length ? batch : undefined
    if (made === undefined) {
      const results = batch.results ??= new Map()
      const candidates = results.get(hash)
      made = candidates?.find((candidate: Batch) => sameEvents(candidate.events, events))
      if (made === undefined) {
        made = { events, frames: events.length === 0 ? [] : this.#framesOf(events) }
        if (candidates === undefined) results.set(hash, [made])
        else candidates.push(made)
      }
    }
    byFilter.set(filter.key, made)
    return made
  }

  /**
   * Frames joined up to JOIN_BYTES: a batch goes to a socket in one write, yet the buffer bound still applies to
   * what a slow client would be sent (each joined frame is checked against it like any other).
   */
  #framesOf (events: StoredEvent[]): EncodedMessage[] {
    if (events.length === 1) return [this.frame(events[0])]
    const frames: EncodedMessage[] = []
    let group: EncodedMessage[] = []
    let bytes = 0
    for (const event of events) {
      const frame = this.frame(event)
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
      const mine = byTopic.get(this.#host.subscribers(name) as Set<Subscription>)
      if (mine !== undefined) lists.push(mine)
    }
    // Events of one of its topics only (a user's topic and a shared one, say): the topic's own frames, shared.
    if (lists.length === 1) return this.#joined(joined, lists[0], lists[0])
    const events = lists.flat().sort(bySeq)
    return this.#joined(joined, key, events)
  }

  /**
   * A subscriber's events of the tick: written if it is live, kept while its replay is written. Frames, when given,
   * carry exactly these events (a filtered subscriber's are filtered already).
   */
  #hand (subscription: Subscription, events: StoredEvent[], frames: EncodedMessage[] | undefined): void {
    // A stream of another registration ended without telling the hub: it leaves now.
    if (subscription.stream.closed) {
      this.#host.unsubscribe(subscription.stream)
    } else if (subscription.live) {
      this.#write(subscription, events, frames)
    } else if (events.length > 0) {
      // (A batch its filter emptied leaves nothing to wait.)
      const pending = subscription.pending ??= []
      // A released subscriber meets the same events again in the flush.
      for (const event of events) if (pending.length === 0 || event.seq > pending[pending.length - 1].seq) pending.push(event)
      if (pending.length > this.#host.maxPending) {
        subscription.stream[kCutOff]('event stream client too slow: live events piled up behind its replay, closing it',
          { pendingEvents: pending.length, maxPending: this.#host.maxPending })
      }
    }
  }

  /**
   * Writes events (in position order) to a live subscriber, leaving out those it has (a replay wrote them) and, when
   * no frames are given, those its filter rejects: all of them as the frames given when it has none of them, else
   * joined for it alone.
   */
  #write (subscription: Subscription, events: StoredEvent[], frames: EncodedMessage[] | undefined): void {
    const { filter } = subscription
    if (filter !== null && frames === undefined) events = events.filter(event => filter.test(event.tags))
    let first = 0
    while (first < events.length && events[first].seq <= subscription.position) first++
    if (first === events.length) return
    const fresh = first === 0 ? events : events.slice(first)
    subscription.position = fresh[fresh.length - 1].seq
    this.delivered += fresh.length
    const joined = first === 0 && frames !== undefined ? frames : this.#framesOf(fresh)
    for (const frame of joined) subscription.stream.write(frame)
    // The stream counted a joined frame as one message: it carries one per event (unless the stream refused it, cut
    // off as too slow by this very write).
    if (fresh.length !== joined.length && !subscription.stream.closed) this.#host.sent.messages += fresh.length - joined.length
  }
}
