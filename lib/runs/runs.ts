import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { LAST_EVENT_ID_HEADER } from '../constants.js'
import {
  FST_SSE_INVALID_OPTION, FST_SSE_RUN_ACTIVE, FST_SSE_RUN_ENDED, FST_SSE_RUN_LIMIT, FST_SSE_RUNS_CLOSED, FST_SSE_STORE_UNAVAILABLE
} from '../errors.js'
import { iterate, stopSource } from '../source.js'
import type { EventStream } from '../stream.js'
import { AI_SDK_HEADER, AI_SDK_HEADER_VALUE, finalParts, resumeIndex } from './frames.js'
import { RunOwner } from './owner.js'
import { RunReader } from './reader.js'
import { checkRunKey, type ClaimResult, type RunEnd, type RunProtocol, type RunRecord, type RunStore } from './store.js'

/** What a run pulls: an async iterable (an async generator, a Readable, the AI SDK's UI message stream) or an iterable. */
export type RunSource = AsyncIterable<unknown> | (Iterable<unknown> & object)

/** Makes the source once the key is won; the signal aborts when the run stops (hand it to the model call). */
export type RunFactory = (signal: AbortSignal) => RunSource | Promise<RunSource>

export interface StartOptions {
  /**
   * 'events' (default): items as `consume()` takes them, and a final `end` event. 'ai-sdk': the AI SDK's UI message
   * chunks sent as JSON, the `x-vercel-ai-ui-message-stream` header, and `data: [DONE]` at the end.
   */
  protocol?: RunProtocol
  /** A start while the key's run is running: 'attach' (default) resolves with `started: false`; 'error' throws FST_SSE_RUN_ACTIVE. */
  ifRunning?: 'attach' | 'error'
  /** Replace a run of the key that has ended (default false: FST_SSE_RUN_ENDED until its TTL or runs.delete()). */
  replace?: boolean
  /** Called when the source throws: the item it returns (if any) is stored before the final event. */
  onError?: (err: unknown) => unknown
}

export interface StartedRun {
  /** True when this call started the run; false when it was running already (here or on another instance). */
  readonly started: boolean
  readonly run: RunRecord
  /** With `started`: resolves with how the run ended, once its final event is stored ('lost' if another instance ended it). */
  readonly done: Promise<RunEnd | 'lost'> | undefined
}

export interface ReadOptions {
  /** Where to resume from; by default the Last-Event-ID header (else the lastEventIdQuery parameter). */
  lastEventId?: string
}

export interface RunsSettings {
  store: RunStore
  ttl: number
  lease: number
  maxBytes: number
  maxRuns: number
  lastEventIdQuery: string | false
  log: FastifyBaseLogger
}

/** Counters for operators; a snapshot. */
export interface RunsStats {
  /** Runs whose source runs on this instance. */
  running: number
  started: number
  /** Readers open on this instance. */
  readers: number
}

type StreamReply = FastifyReply & { sse: (status?: number) => EventStream<any, any> }

/**
 * Runs: output that outlives its connection. A run pulls its source once per key across every instance sharing the
 * store, stores what it yields (bounded, kept for a TTL after its end) and ends with a final event; any number of
 * readers, on any instance, replay it from the start or from their last id and then tail it.
 */
export class EventRuns {
  readonly #settings: RunsSettings
  readonly #owners = new Map<string, RunOwner>()
  #renewal: NodeJS.Timeout | undefined
  #started = 0
  #readers = 0
  #claiming = 0
  #closed = false

  constructor (settings: RunsSettings) {
    this.#settings = settings
  }

  /**
   * Starts a run under a key, unless one holds it. The source may be a function of an AbortSignal, called only when
   * this call won the key (so that a model is called once): the signal aborts when the run is cancelled or stops.
   * Throws FST_SSE_INVALID_RUN_KEY, FST_SSE_RUN_LIMIT, FST_SSE_RUN_ACTIVE, FST_SSE_RUN_ENDED or FST_SSE_RUNS_CLOSED.
   */
  async start (key: string, source: RunSource | RunFactory, options: StartOptions = {}): Promise<StartedRun> {
    checkRunKey(key)
    const { protocol, ifRunning, replace } = checkStartOptions(options)
    try {
      if (this.#closed) throw new FST_SSE_RUNS_CLOSED()
      // Claims under way count: concurrent starts cannot take the instance past maxRuns.
      if (this.#owners.size + this.#claiming >= this.#settings.maxRuns) throw new FST_SSE_RUN_LIMIT(String(this.#settings.maxRuns))
      const id = randomBytes(9).toString('base64url')
      const { lease, ttl } = this.#settings
      this.#claiming++
      let claim: ClaimResult
      try {
        claim = await this.#settings.store.claim(key, { id, protocol, interrupted: finalParts(protocol, 'interrupted'), lease, ttl, replace })
      } finally {
        this.#claiming--
      }
      if (!claim.claimed) {
        if (claim.run.state !== 'running') throw new FST_SSE_RUN_ENDED(key)
        if (ifRunning === 'error') throw new FST_SSE_RUN_ACTIVE(key)
        release(source)
        return { started: false, run: claim.run, done: undefined }
      }
      return { started: true, run: claim.run, done: this.#own(key, id, protocol, source, options.onError) }
    } catch (err) {
      release(source)
      throw err
    }
  }

  /**
   * Answers a reader of a run: 204 when the key holds no run (or the reader has its final event already), else an
   * event stream of what it missed, then the live tail, closed after the final event. Resolves once it is live. The
   * stream opens once the first page of what it missed was read: a store that fails answers with its error (503).
   */
  async read (reply: FastifyReply, key: string, options: ReadOptions = {}): Promise<void> {
    checkRunKey(key)
    if (this.#closed) throw new FST_SSE_RUNS_CLOSED()
    for (let attempt = 1; ; attempt++) {
      const run = await this.#settings.store.get(key)
      const after = run === null ? 0 : resumeIndex(options.lastEventId ?? this.#lastEventId(reply), run.id, run.count)
      if (run === null || (run.state !== 'running' && after >= run.count)) {
        await reply.code(204).send()
        return
      }
      // A reader on the owner's instance is told of new frames by the owner: no round trip through a remote store.
      const owner = this.#owners.get(key)
      const local = this.#settings.store.remote === true && owner?.id === run.id ? owner : undefined
      const reader = new RunReader(this.#settings.store, key, run.id, after, reply.log, local)
      if (await reader.prepare()) {
        if (run.protocol === 'ai-sdk') reply.header(AI_SDK_HEADER, AI_SDK_HEADER_VALUE)
        const stream = (reply as StreamReply).sse(200)
        if (!stream.closed) {
          this.#readers++
          stream.signal.addEventListener('abort', () => { this.#readers-- }, { once: true })
        }
        await reader.attach(stream)
        return
      }
      // The key was started again between the two reads: read the run it holds now.
      if (attempt === MAX_READ_ATTEMPTS) throw new FST_SSE_STORE_UNAVAILABLE(`the run of ${key} was replaced ${attempt} times while it was read`)
    }
  }

  /** start(), then read() from the start: the route that starts a run (a chat's POST) streams it too. */
  async stream (reply: FastifyReply, key: string, source: RunSource | RunFactory, options: StartOptions = {}): Promise<StartedRun> {
    const started = await this.start(key, source, options)
    await this.read(reply, key, { lastEventId: '' })
    return started
  }

  /** The run of a key, or null. */
  async get (key: string): Promise<RunRecord | null> {
    checkRunKey(key)
    return await this.#settings.store.get(key)
  }

  /**
   * Cancels a running run, wherever its source runs: the source is stopped (`return()`, `destroy()`, the signal
   * aborted) and readers get the final event with reason `cancelled`. False when the key holds no running run.
   */
  async cancel (key: string): Promise<boolean> {
    checkRunKey(key)
    const owner = this.#owners.get(key)
    if (owner === undefined) return await this.#settings.store.cancel(key)
    owner.stop('cancelled')
    return true
  }

  /** Forgets a run that ended, so that its key can start again before the TTL; false when there is none (or it runs). */
  async delete (key: string): Promise<boolean> {
    checkRunKey(key)
    return await this.#settings.store.delete(key)
  }

  stats (): RunsStats {
    return { running: this.#owners.size, started: this.#started, readers: this.#readers }
  }

  /**
   * Shutdown: runs of this instance end as interrupted (their readers, here and elsewhere, get the final event; the
   * key can start again), within a bound, then the store closes.
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const ending = Array.from(this.#owners.values(), owner => {
      owner.stop('interrupted')
      return owner.done
    })
    await Promise.race([Promise.all(ending), sleep(Math.min(this.#settings.lease, CLOSE_WAIT_MS), undefined, { ref: false })])
    clearInterval(this.#renewal)
    await this.#settings.store.close()
  }

  #own (key: string, id: string, protocol: RunProtocol, source: RunSource | RunFactory,
    onError: StartOptions['onError']): Promise<RunEnd | 'lost'> {
    const { store, lease, ttl, maxBytes, log } = this.#settings
    const owner = new RunOwner(key, id, protocol, { store, lease, ttl, maxBytes, log })
    this.#owners.set(key, owner)
    this.#started++
    this.#renewal ??= setInterval(this.#renew, Math.floor(lease / 3))
    owner.done = this.#drive(owner, source, onError).finally(() => {
      // A run this instance lost may still be ending when the key starts here again: only its own entry goes.
      if (this.#owners.get(key) === owner) this.#owners.delete(key)
      if (this.#owners.size === 0) {
        clearInterval(this.#renewal)
        this.#renewal = undefined
      }
    })
    return owner.done
  }

  /** Listens for cancels from other instances, then pulls the source. A factory or a source that throws at once fails the run. */
  async #drive (owner: RunOwner, source: RunSource | RunFactory, onError: StartOptions['onError']): Promise<RunEnd | 'lost'> {
    let stopListening = noop
    try {
      stopListening = await this.#settings.store.listenCancel(owner.key, () => owner.stop('cancelled'))
    } catch (err) {
      // Cancels still arrive with the next renewal.
      this.#settings.log.warn({ err, run: owner.key }, 'run store could not listen for cancels; relying on the lease renewal')
    }
    try {
      let iterable: unknown
      let iterator: AsyncIterator<unknown> | Iterator<unknown>
      try {
        iterable = typeof source === 'function' ? await source(owner.signal) : source
        iterator = iterate(iterable)
      } catch (err) {
        iterator = failing(err)
        iterable = iterator
      }
      return await owner.run(iterable, iterator, onError)
    } finally {
      stopListening()
    }
  }

  readonly #renew = (): void => {
    const owners = Array.from(this.#owners.values())
    this.#settings.store.renew(owners, this.#settings.lease, this.#settings.ttl).then(results => {
      for (let i = 0; i < owners.length; i++) owners[i].renewed(results[i])
    }, (err: unknown) => {
      this.#settings.log.warn({ err }, 'run store failed to renew the leases of this instance\'s runs')
      for (const owner of owners) if (owner.expired) owner.renewed('lost')
    })
  }

  #lastEventId (reply: FastifyReply): unknown {
    const { headers, query } = reply.request
    const header = headers[LAST_EVENT_ID_HEADER]
    if (header !== undefined && header !== '') return header
    const name = this.#settings.lastEventIdQuery
    return name === false ? undefined : (query as Record<string, unknown> | undefined)?.[name]
  }
}

/** A reader whose run is replaced under it this many times in a row gives up (503). */
const MAX_READ_ATTEMPTS = 3
/** A shutdown waits this long at most for its runs' final events to be stored. */
const CLOSE_WAIT_MS = 5000
const noop = (): void => {}

/** A source handed in that will not run (the key was taken, say) is stopped, so that its cleanup runs. */
function release (source: unknown): void {
  if (typeof source === 'function' || typeof source !== 'object' || source === null) return
  try {
    const iterator = iterate(source)
    stopSource(source, iterator, noop)
  } catch {}
}

function failing (err: unknown): Iterator<unknown> {
  return { next () { throw err } }
}

function checkStartOptions (options: StartOptions): { protocol: RunProtocol, ifRunning: 'attach' | 'error', replace: boolean } {
  const { protocol = 'events', ifRunning = 'attach', replace = false, onError } = options
  if (protocol !== 'events' && protocol !== 'ai-sdk') throw new FST_SSE_INVALID_OPTION('protocol', "expected 'events' or 'ai-sdk'")
  if (ifRunning !== 'attach' && ifRunning !== 'error') throw new FST_SSE_INVALID_OPTION('ifRunning', "expected 'attach' or 'error'")
  if (typeof replace !== 'boolean') throw new FST_SSE_INVALID_OPTION('replace', 'expected a boolean')
  if (onError !== undefined && typeof onError !== 'function') throw new FST_SSE_INVALID_OPTION('onError', 'expected a function')
  return { protocol, ifRunning, replace }
}
