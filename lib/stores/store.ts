import { FST_SSE_INVALID_OPTION } from '../errors.js'
import type { Tags } from '../filter.js'
import type { PresenceStore } from '../presence.js'
import type { RunStore } from '../runs/store.js'

/** What a publisher hands to the store: the store assigns the position, and the id when none is given. */
export interface NewEvent {
  data: string
  event?: string
  /** The publisher's own id; never a decimal integer (those are positions). */
  id?: string
  /** The event's tags, checked by the hub (subscribers' filters test them); kept and delivered with the event. */
  tags?: Tags
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
  /** The tags it was published with, if any. */
  readonly tags?: Tags
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
 * Told that the store can no longer deliver a topic without a gap (it lost its history, say): the hub closes the
 * topic's subscribers, whose clients reconnect and resume or resynchronise. Must not throw.
 */
export type StoreFailure = (err: Error) => void

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
   * function that stops the delivery. A store that can lose events on the way calls onFailure instead of skipping.
   */
  listen (topic: string, listener: StoreListener, onFailure?: StoreFailure): Promise<() => Promise<void>>
  close (): Promise<void>
  /** The store's own counters, shown by the hub's stats() as `store` (a store that keeps none leaves it out). */
  stats?: () => StoreStats
  /** Runs kept where this store keeps topics (the Redis store: the same Redis, prefix and connection), for `eventRuns`. */
  runStore?: () => RunStore
  /**
   * Presence kept where this store keeps topics, across the instances sharing it (the Redis store); each call is a
   * new instance's entries, living `ttl` ms without renewal. A store without it: the hub answers for this instance.
   */
  presence?: (ttl: number) => PresenceStore
}

/** Numbers a store reports about itself: how far behind it is, what it had to recover from. */
export type StoreStats = Readonly<Record<string, number>>

/** A stored event with `event` and `tags` only when it has them (as the stores have always made them). */
export function storedEvent (topic: string, seq: number, id: string, event: string | undefined, data: string, tags: Tags | undefined): StoredEvent {
  if (tags === undefined) return event === undefined ? { topic, seq, id, data } : { topic, seq, id, event, data }
  return event === undefined ? { topic, seq, id, data, tags } : { topic, seq, id, event, data, tags }
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

/** An integer of 1 to 2^31-1 (a timer's range), else FST_SSE_INVALID_OPTION. */
export function positiveInteger (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new FST_SSE_INVALID_OPTION(name, `expected a positive integer, got ${String(value)}`)
  }
  return value
}
