import { FST_SSE_RUNS_CLOSED } from '../errors.js'
import type { ClaimResult, RunClaim, RunEnd, RunListener, RunPage, RunRecord, RunStore, RunWriteResult } from './store.js'

interface MemoryRun {
  key: string
  id: string
  state: RunRecord['state']
  protocol: RunRecord['protocol']
  frames: Buffer[]
  bytes: number
  cancelled: boolean
  /** Forgets the run once its TTL after the end has passed. */
  expiry: NodeJS.Timeout | undefined
}

/**
 * Runs in this process's memory: the default, for one instance. The owner lives in this process too, so no lease
 * can run out while the process lives: an instance that stops ends its runs as interrupted itself.
 */
export class MemoryRunStore implements RunStore {
  readonly #runs = new Map<string, MemoryRun>()
  readonly #listeners = new Map<string, Set<RunListener>>()
  readonly #cancels = new Map<string, Set<() => void>>()
  #closed = false

  async claim (key: string, claim: RunClaim): Promise<ClaimResult> {
    this.#open()
    const held = this.#runs.get(key)
    if (held !== undefined && (held.state === 'running' || (held.state !== 'interrupted' && !claim.replace))) {
      return { claimed: false, run: record(held) }
    }
    if (held !== undefined) clearTimeout(held.expiry)
    const run: MemoryRun = { key, id: claim.id, state: 'running', protocol: claim.protocol, frames: [], bytes: 0, cancelled: false, expiry: undefined }
    this.#runs.set(key, run)
    return { claimed: true, run: record(run) }
  }

  async append (key: string, id: string, first: number, frames: readonly Buffer[], end: RunEnd | undefined, _lease: number, ttl: number): Promise<RunWriteResult> {
    this.#open()
    const run = this.#runs.get(key)
    if (run === undefined || run.id !== id || run.state !== 'running' || first !== run.frames.length + 1) return 'lost'
    for (const frame of frames) {
      run.frames.push(frame)
      run.bytes += frame.length
    }
    if (end !== undefined) {
      run.state = end
      run.expiry = setTimeout(() => { if (this.#runs.get(key) === run) this.#runs.delete(key) }, ttl).unref()
    }
    const listeners = this.#listeners.get(key)
    if (listeners !== undefined) for (const listener of listeners) listener.frames(id, first, frames, end !== undefined)
    return run.cancelled ? 'cancelled' : 'ok'
  }

  async renew (runs: ReadonlyArray<{ key: string, id: string }>): Promise<RunWriteResult[]> {
    this.#open()
    return runs.map(({ key, id }) => {
      const run = this.#runs.get(key)
      if (run === undefined || run.id !== id || run.state !== 'running') return 'lost'
      return run.cancelled ? 'cancelled' : 'ok'
    })
  }

  async get (key: string): Promise<RunRecord | null> {
    this.#open()
    const run = this.#runs.get(key)
    return run === undefined ? null : record(run)
  }

  async read (key: string, id: string, after: number, limit: number): Promise<RunPage | null> {
    this.#open()
    const run = this.#runs.get(key)
    if (run === undefined || run.id !== id) return null
    const frames = run.frames.slice(after, after + limit)
    return { frames, state: run.state, ended: run.state !== 'running' && after + frames.length === run.frames.length }
  }

  async listen (key: string, listener: RunListener): Promise<() => void> {
    this.#open()
    return add(this.#listeners, key, listener)
  }

  async listenCancel (key: string, onCancel: () => void): Promise<() => void> {
    this.#open()
    return add(this.#cancels, key, onCancel)
  }

  async cancel (key: string): Promise<boolean> {
    this.#open()
    const run = this.#runs.get(key)
    if (run === undefined || run.state !== 'running') return false
    run.cancelled = true
    const cancels = this.#cancels.get(key)
    if (cancels !== undefined) for (const onCancel of cancels) onCancel()
    return true
  }

  async delete (key: string): Promise<boolean> {
    this.#open()
    const run = this.#runs.get(key)
    if (run === undefined || run.state === 'running') return false
    clearTimeout(run.expiry)
    this.#runs.delete(key)
    return true
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const run of this.#runs.values()) clearTimeout(run.expiry)
    this.#runs.clear()
    this.#listeners.clear()
    this.#cancels.clear()
  }

  #open (): void {
    if (this.#closed) throw new FST_SSE_RUNS_CLOSED()
  }
}

function record (run: MemoryRun): RunRecord {
  return { key: run.key, id: run.id, state: run.state, count: run.frames.length, bytes: run.bytes, protocol: run.protocol }
}

/** Adds to a key's set; returns the function that removes it (and the set once empty). */
function add<T> (sets: Map<string, Set<T>>, key: string, item: T): () => void {
  let set = sets.get(key)
  if (set === undefined) {
    set = new Set()
    sets.set(key, set)
  }
  set.add(item)
  return () => {
    const current = sets.get(key)
    if (current === undefined || !current.delete(item) || current.size > 0) return
    sets.delete(key)
  }
}
