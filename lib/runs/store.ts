import { FST_SSE_INVALID_RUN_KEY } from '../errors.js'

/** Where a run stands: running, or how it ended. */
export type RunState = 'running' | RunEnd
/**
 * How a run ended: its source ran out (`done`) or threw (`failed`), it was cancelled, its owner's lease ran out
 * (`interrupted`: the instance died, or shut down mid-run), or it crossed its byte cap (`overflow`).
 */
export type RunEnd = 'done' | 'failed' | 'cancelled' | 'interrupted' | 'overflow'
/** What a run's frames speak: plain events, or the AI SDK's UI message stream protocol. */
export type RunProtocol = 'events' | 'ai-sdk'

/** A run as the store keeps it. */
export interface RunRecord {
  readonly key: string
  /** Unique per start of the key: the run's ids on the wire are `<id>.<index>`. */
  readonly id: string
  readonly state: RunState
  /** Frames kept, the final one included once the run ended. */
  readonly count: number
  readonly bytes: number
  readonly protocol: RunProtocol
}

/** What an owner asks for when it starts a run. */
export interface RunClaim {
  readonly id: string
  readonly protocol: RunProtocol
  /**
   * The final frame of an interrupted run, around its id line: whoever finds the owner's lease run out writes
   * `before + 'id: <id>.<index>\n' + after` as the run's last frame.
   */
  readonly interrupted: { readonly before: string, readonly after: string }
  /** Milliseconds the claim holds without a renewal. */
  readonly lease: number
  /** Milliseconds an ended run is kept. */
  readonly ttl: number
  /** Take the key over from a run that ended (an interrupted one is taken over anyway); never from a running one. */
  readonly replace: boolean
}

export type ClaimResult = { readonly claimed: boolean, readonly run: RunRecord }

/** What an owner's write or renewal found: its run goes on, was asked to stop, or is no longer its own. */
export type RunWriteResult = 'ok' | 'cancelled' | 'lost'

/** A page of a run's frames. */
export interface RunPage {
  /** The frames after the index asked for, oldest first. */
  readonly frames: Buffer[]
  /** Where the run stood when this page was read; `ended` once the page holds the final frame. */
  readonly state: RunState
  readonly ended: boolean
}

/** Told what happens to one run, by the store of whichever instance wrote it. Must not throw. */
export interface RunListener {
  /** Frames `first` to `first + frames.length - 1` of the run `id`; `ended` when the last one is its final frame. */
  frames: (id: string, first: number, frames: readonly Buffer[], ended: boolean) => void
  /** The store can no longer tell this listener everything (its connection dropped): it must read again or give up. */
  fail: (err: Error) => void
}

/**
 * Where runs live: their frames, their state and their owner's lease, shared by every instance that uses the store.
 * Only a run's owner (the instance whose claim won) writes its frames; every write carries the run's id, so a write
 * of an owner that lost its run changes nothing.
 */
export interface RunStore {
  /**
   * Listening crosses a network (Redis): a reader on the instance that runs the source is then told of each write by
   * the owner, once the store has it, instead of by the store's round trip back. In-process stores leave it unset.
   */
  readonly remote?: boolean
  /** Claims the key for a new run; when the key is taken, resolves with the run that holds it, unclaimed. */
  claim (key: string, claim: RunClaim): Promise<ClaimResult>
  /**
   * Appends the frames `first`, `first + 1`, … of the run (and, with `end`, ends it: the last frame is then its final
   * one, and the run is kept `ttl` ms from now); renews the lease. The owner sends an append again when the first
   * attempt failed, and the attempt may have been stored anyway (a timeout): an append already stored answers as
   * stored and changes nothing.
   */
  append (key: string, id: string, first: number, frames: readonly Buffer[], end: RunEnd | undefined, lease: number, ttl: number): Promise<RunWriteResult>
  /** Renews the leases of an owner's runs, in one call. */
  renew (runs: ReadonlyArray<{ readonly key: string, readonly id: string }>, lease: number, ttl: number): Promise<RunWriteResult[]>
  /** The run of a key, or null when there is none (never started, expired or deleted). */
  get (key: string): Promise<RunRecord | null>
  /** Up to `limit` frames of the run after `after`; null when the key no longer holds the run `id`. */
  read (key: string, id: string, after: number, limit: number): Promise<RunPage | null>
  /** Starts telling the listener about the run's new frames; resolves once every later append reaches it. */
  listen (key: string, listener: RunListener): Promise<() => void>
  /** Tells the run's owner when someone asks to cancel it (on any instance); resolves once every later cancel reaches it. */
  listenCancel (key: string, onCancel: () => void): Promise<() => void>
  /** Asks the owner of a running run to stop it; false when the key holds no running run. */
  cancel (key: string): Promise<boolean>
  /** Forgets a run that ended; false when there is none. A running one is not deleted: cancel it first. */
  delete (key: string): Promise<boolean>
  close (): Promise<void>
}

/** Longest run key: it becomes part of store keys (Redis ones, say). */
export const MAX_RUN_KEY_LENGTH = 128

/** A run key: 1-128 of letters, digits and `_ - . : @`, else FST_SSE_INVALID_RUN_KEY (nothing is read or kept). */
export function checkRunKey (key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_RUN_KEY_LENGTH) {
    throw new FST_SSE_INVALID_RUN_KEY(`expected a string of 1-${MAX_RUN_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`)
  }
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    const letterOrDigit = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
    // _ - . : @
    if (!letterOrDigit && c !== 0x5f && c !== 0x2d && c !== 0x2e && c !== 0x3a && c !== 0x40) {
      throw new FST_SSE_INVALID_RUN_KEY(`${JSON.stringify(key)}: only letters, digits and _ - . : @ are allowed`)
    }
  }
}
