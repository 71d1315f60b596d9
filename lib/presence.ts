import { randomUUID } from 'node:crypto'
import { FST_SSE_INVALID_PRESENCE } from './errors.js'

/** Who a subscriber is: an id (a user's, say) and a little JSON about it, listed by `presence()`. */
export interface PresenceMember {
  id: string
  /** Anything JSON can carry, up to 1 KiB as JSON (a name, an avatar's address). */
  info?: unknown
}

/** A subscriber's presence: listed as a member, or only counted (`'count'`, for topics with many thousands). */
export type PresenceOption = PresenceMember | 'count'

/** Who is on a topic, across the instances sharing the store. */
export interface Presence {
  /** Streams on the topic that carry a presence, listed or counted. */
  count: number
  /** The listed members, one per id, with how many streams each has open (two tabs, say). */
  members: Array<{ id: string, info?: unknown, streams: number }>
}

/** An instance's presence changes of a tick on one topic, and its count of streams there after them. */
export interface PresenceChange {
  topic: string
  count: number
  /** Members that joined: their key (unique per stream) and JSON. */
  joined: Array<[key: string, member: string]>
  /** Keys of members that left. */
  left: string[]
  /** The instance's whole state of the topic: its entries not in `joined` are dropped (after a failed write, a restart). */
  replace?: boolean
}

/**
 * Where presence is kept across instances (the Redis store's `presence()`); without one, the hub answers from what
 * this instance knows. Each instance writes only its own entries, renews them while it lives, and an instance that
 * stops renewing drops out after the TTL.
 */
export interface PresenceStore {
  /** This instance's changes of a tick, written at once. */
  update: (changes: PresenceChange[]) => Promise<void>
  /** Renews this instance's entries; the topics the store no longer has (a restart) are written again from `state`. */
  refresh: (counts: Map<string, number>, state: (topic: string) => PresenceChange) => Promise<void>
  /** Every instance's entries of a topic (members as JSON), live ones only; `count` only when `listed` is false. */
  read: (topic: string, listed: boolean) => Promise<{ count: number, members: string[] }>
  close: () => Promise<void>
}

export const MAX_PRESENCE_ID = 128
export const MAX_PRESENCE_INFO = 1024

/** Checks a subscriber's presence: its JSON, or null for one only counted. FST_SSE_INVALID_PRESENCE else. */
export function checkPresence (presence: unknown): string | null {
  if (presence === 'count') return null
  if (typeof presence !== 'object' || presence === null || Array.isArray(presence)) {
    throw new FST_SSE_INVALID_PRESENCE(`expected 'count' or { id, info? }, got ${presence === null ? 'null' : Array.isArray(presence) ? 'an array' : typeof presence}`)
  }
  const { id, info } = presence as PresenceMember
  if (typeof id !== 'string' || id === '' || id.length > MAX_PRESENCE_ID) {
    throw new FST_SSE_INVALID_PRESENCE(`id must be a string of 1 to ${MAX_PRESENCE_ID} characters`)
  }
  const extra = Object.keys(presence).filter(key => key !== 'id' && key !== 'info')
  if (extra.length > 0) throw new FST_SSE_INVALID_PRESENCE(`unknown ${JSON.stringify(extra)}: expected { id, info? }`)
  let info$: string | undefined
  try {
    info$ = info === undefined ? undefined : JSON.stringify(info) as string | undefined
  } catch (err) {
    throw new FST_SSE_INVALID_PRESENCE(`info cannot be written as JSON (${(err as Error).message})`)
  }
  if (info !== undefined && info$ === undefined) throw new FST_SSE_INVALID_PRESENCE(`info cannot be written as JSON (${typeof info})`)
  if (info$ !== undefined && Buffer.byteLength(info$) > MAX_PRESENCE_INFO) {
    throw new FST_SSE_INVALID_PRESENCE(`info is more than ${MAX_PRESENCE_INFO} bytes as JSON`)
  }
  const json = info$ === undefined ? `{"id":${JSON.stringify(id)}}` : `{"id":${JSON.stringify(id)},"info":${info$}}`
  return json
}

/** Members' JSON (one per stream) as the list `presence()` answers: one entry per id, with its streams counted. */
export function membersOf (entries: Iterable<string>): Presence['members'] {
  const byId = new Map<string, Presence['members'][number]>()
  for (const entry of entries) {
    const member = JSON.parse(entry) as PresenceMember
    const known = byId.get(member.id)
    if (known !== undefined) known.streams++
    else byId.set(member.id, member.info === undefined ? { id: member.id, streams: 1 } : { id: member.id, info: member.info, streams: 1 })
  }
  return [...byId.values()]
}

interface Local {
  /** Streams on the topic with a presence, listed or counted. */
  count: number
  /** Listed members by key. */
  readonly members: Map<string, string>
}

/**
 * This instance's presence: its subscribers' entries per topic, the changes of the tick (written to the store
 * together at the end of it), and the renewal that keeps them alive in the store while the instance lives.
 */
export class PresenceBook {
  readonly #topics = new Map<string, Local>()
  readonly #store: PresenceStore | undefined
  readonly #prefix = randomUUID().slice(0, 8)
  readonly #onError: (err: unknown) => void
  #next = 0
  #changes = new Map<string, PresenceChange>()
  /** Topics whose changes could not be written: the next renewal writes them whole. */
  readonly #dirty = new Set<string>()
  #writing: Promise<void> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined

  constructor (store: PresenceStore | undefined, refreshEvery: number, onError: (err: unknown) => void) {
    this.#store = store
    this.#onError = onError
    if (store !== undefined) this.#timer = setInterval(this.#refresh, refreshEvery).unref()
  }

  /** A subscriber's entry on its topics; returns its key. */
  join (topics: readonly string[], member: string | null): string {
    const key = `${this.#prefix}.${(this.#next++).toString(36)}`
    for (const name of topics) {
      let local = this.#topics.get(name)
      if (local === undefined) this.#topics.set(name, local = { count: 0, members: new Map() })
      local.count++
      if (member !== null) local.members.set(key, member)
      const change = this.#change(name, local)
      if (member !== null) change?.joined.push([key, member])
    }
    return key
  }

  leave (topics: readonly string[], key: string): void {
    for (const name of topics) {
      const local = this.#topics.get(name) as Local
      local.count--
      const listed = local.members.delete(key)
      if (local.count === 0) this.#topics.delete(name)
      const change = this.#change(name, local)
      if (listed) change?.left.push(key)
    }
  }

  /** Who is on a topic: across the instances with a store that keeps presence, else on this instance. */
  async read (topic: string, listed: boolean): Promise<Presence> {
    if (this.#store === undefined) {
      const local = this.#topics.get(topic)
      return { count: local?.count ?? 0, members: listed && local !== undefined ? membersOf(local.members.values()) : [] }
    }
    // What this instance changed in this tick is in the store before it is read.
    await this.#writing
    const { count, members } = await this.#store.read(topic, listed)
    return { count, members: membersOf(members) }
  }

  /** Stops the renewal once the last changes are written (the streams, closed first, left). */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    await this.#writing
    await this.#store?.close()
  }

  #change (name: string, local: Local): PresenceChange | undefined {
    if (this.#store === undefined) return undefined
    let change = this.#changes.get(name)
    if (change === undefined) {
      if (this.#changes.size === 0) this.#writing = new Promise(resolve => { setImmediate(() => { this.#flush().then(resolve, resolve) }) })
      this.#changes.set(name, change = { topic: name, count: 0, joined: [], left: [] })
    }
    change.count = local.count
    return change
  }

  async #flush (): Promise<void> {
    const changes = [...this.#changes.values()]
    this.#changes = new Map()
    try {
      await (this.#store as PresenceStore).update(changes)
    } catch (err) {
      // The next renewal writes these topics whole.
      for (const { topic } of changes) this.#dirty.add(topic)
      this.#onError(err)
    }
  }

  /** The instance's whole state of a topic, which replaces what the store has of it. */
  readonly #state = (name: string): PresenceChange => {
    const local = this.#topics.get(name)
    return { topic: name, count: local?.count ?? 0, joined: local === undefined ? [] : [...local.members], left: [], replace: true }
  }

  readonly #refresh = (): void => {
    const store = this.#store as PresenceStore
    if (this.#dirty.size > 0) {
      const dirty = [...this.#dirty]
      this.#dirty.clear()
      store.update(dirty.map(this.#state)).catch((err: unknown) => {
        for (const name of dirty) this.#dirty.add(name)
        this.#onError(err)
      })
    }
    if (this.#topics.size === 0) return
    const counts = new Map<string, number>()
    for (const [name, local] of this.#topics) counts.set(name, local.count)
    store.refresh(counts, this.#state).catch(this.#onError)
  }
}
