import type { Redis } from 'ioredis'
import { FST_SSE_RUNS_CLOSED, FST_SSE_STORE_UNAVAILABLE } from '../errors.js'
import type {
  ClaimResult, RunClaim, RunEnd, RunListener, RunPage, RunProtocol, RunRecord, RunState, RunStore, RunWriteResult
} from '../runs/store.js'
import { APPEND, CANCEL, CLAIM, DELETE, GET, READ, RENEW, SWEEP } from './redis-run-scripts.js'
import { Script } from './redis-script.js'

/** What the run store borrows from the Redis store: its connection, its key prefix, its bounded commands. */
export interface RunHost {
  readonly client: Redis
  readonly prefix: string
  /** Sends a command, failing with FST_SSE_STORE_UNAVAILABLE when Redis does not answer in time. */
  command: <T>(send: () => Promise<T>) => Promise<T>
  log: { warn: (details: object, message: string) => void }
  /** Where the subscriber connection's errors go (the Redis store's own handler: logged as warnings). */
  onError: (err: Error) => void
}

export interface RedisRunStoreSettings {
  /**
   * Milliseconds between the checks, on every instance with readers of a run, that its owner's lease holds (the
   * Redis store's `leaseCheck`): an owner killed mid-run leaves its readers the final `interrupted` event within the
   * lease plus this.
   */
  leaseCheck: number
}

/** Runs one append script call carries at most, and frames one run's append carries at most. */
const MAX_BATCH_RUNS = 128
const NL = 0x0a

const scripts = {
  claim: new Script(CLAIM, { buffers: true }),
  append: new Script(APPEND, { buffers: true }),
  renew: new Script(RENEW, { buffers: true }),
  get: new Script(GET, { buffers: true }),
  read: new Script(READ, { buffers: true }),
  cancel: new Script(CANCEL, { buffers: true }),
  delete: new Script(DELETE, { buffers: true }),
  sweep: new Script(SWEEP, { buffers: true })
}

interface PendingAppend {
  key: string
  args: Array<string | number | Buffer>
  resolve: (result: RunWriteResult) => void
  reject: (err: unknown) => void
}

/**
 * Runs in Redis, beside the Redis store's topics (`store.runStore()`): a hash and a list per run, appends of a tick
 * sent as one script call for all the runs of the instance, live frames over one channel per run read by one
 * subscriber connection per instance (opened on first use), and a cancel channel per run that its owner listens
 * to. A dropped subscriber connection fails the readers (they close, and their clients resume from their last id);
 * owners learn of cancels at the next renewal then.
 */
export class RedisRunStore implements RunStore {
  readonly remote = true
  readonly #host: RunHost
  readonly #leaseCheck: number
  /** Listeners of each run's frames channel (readers), and of each run's cancel channel (owners). */
  readonly #frames = new Map<string, Set<RunListener>>()
  readonly #cancels = new Map<string, Set<() => void>>()
  /** The SUBSCRIBE of each listened channel, shared by its listeners. */
  readonly #subscribed = new Map<string, Promise<unknown>>()
  #sub: Redis | undefined
  #pending: PendingAppend[] = []
  #sweeper: NodeJS.Timeout | undefined
  #closed = false

  constructor (host: RunHost, settings: RedisRunStoreSettings) {
    this.#host = host
    this.#leaseCheck = settings.leaseCheck
  }

  async claim (key: string, claim: RunClaim): Promise<ClaimResult> {
    const { id, protocol, interrupted, lease, ttl, replace } = claim
    const reply = await this.#run(scripts.claim, this.#keys(key), [id, protocol, interrupted.before, interrupted.after, lease, ttl, replace ? '1' : '0']) as Buffer[]
    return { claimed: Number(reply[0]) === 1, run: record(key, reply.slice(1) as Buffer[]) }
  }

  /** Appends wait for the end of the tick and go with every other run's in one script call. */
  async append (key: string, id: string, first: number, frames: readonly Buffer[], end: RunEnd | undefined, lease: number): Promise<RunWriteResult> {
    this.#open()
    return await new Promise<RunWriteResult>((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(this.#flush, lease)
      this.#pending.push({ key, args: [id, first, end ?? '', frames.length, ...frames], resolve, reject })
    })
  }

  readonly #flush = (lease: number): void => {
    const batch = this.#pending.splice(0, MAX_BATCH_RUNS)
    if (this.#pending.length > 0) setImmediate(this.#flush, lease)
    const keys: string[] = []
    const args: Array<string | number | Buffer> = [lease]
    for (const append of batch) {
      keys.push(...this.#keys(append.key))
      args.push(...append.args)
    }
    this.#run(scripts.append, keys, args).then(reply => {
      const results = reply as Buffer[]
      for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i].toString() as RunWriteResult)
    }, (err: unknown) => { for (const { reject } of batch) reject(err) })
  }

  async renew (runs: ReadonlyArray<{ readonly key: string, readonly id: string }>, lease: number): Promise<RunWriteResult[]> {
    const results: RunWriteResult[] = []
    for (let start = 0; start < runs.length; start += MAX_BATCH_RUNS) {
      const chunk = runs.slice(start, start + MAX_BATCH_RUNS)
      const reply = await this.#run(scripts.renew, chunk.flatMap(run => this.#keys(run.key)), [lease, ...chunk.map(run => run.id)]) as Buffer[]
      for (const result of reply) results.push(result.toString() as RunWriteResult)
    }
    return results
  }

  async get (key: string): Promise<RunRecord | null> {
    const reply = await this.#run(scripts.get, this.#keys(key), []) as Buffer[] | null
    return reply === null ? null : record(key, reply)
  }

  async read (key: string, id: string, after: number, limit: number): Promise<RunPage | null> {
    const reply = await this.#run(scripts.read, this.#keys(key), [id, after, limit]) as [Buffer, Buffer, Buffer[]] | null
    if (reply === null) return null
    const state = reply[0].toString() as RunState
    const frames = reply[2]
    return { frames, state, ended: state !== 'running' && after + frames.length === Number(reply[1].toString()) }
  }

  async listen (key: string, listener: RunListener): Promise<() => void> {
    const stop = await this.#listenOn(this.#frames, this.#hash(key), listener)
    this.#sweeper ??= setInterval(this.#sweep, this.#leaseCheck).unref()
    return stop
  }

  /** Cancels go on a channel of their own, so that an owner is not sent its run's frames. */
  async listenCancel (key: string, onCancel: () => void): Promise<() => void> {
    return await this.#listenOn(this.#cancels, this.#cancelChannel(key), onCancel)
  }

  /** Adds a listener to a channel, subscribing it on first use; resolves once the SUBSCRIBE was answered. */
  async #listenOn<L> (channels: Map<string, Set<L>>, channel: string, listener: L): Promise<() => void> {
    this.#open()
    let listeners = channels.get(channel)
    if (listeners === undefined) {
      listeners = new Set()
      channels.set(channel, listeners)
      const sub = this.#subscriber()
      const subscribing = this.#host.command(() => sub.subscribe(channel))
      this.#subscribed.set(channel, subscribing)
      // Its listeners wait for it, so none has left when it fails: the channel is forgotten with them.
      subscribing.catch(() => {
        this.#forget(channels, channel)
        // The SUBSCRIBE may still go out once the connection is back: nobody listens then.
        sub.unsubscribe(channel).catch(this.#host.onError)
      })
    }
    listeners.add(listener)
    try {
      await this.#subscribed.get(channel)
    } catch (err) {
      listeners.delete(listener)
      throw err
    }
    return () => {
      const current = channels.get(channel)
      if (current === undefined || !current.delete(listener) || current.size > 0) return
      this.#forget(channels, channel)
      this.#sub?.unsubscribe(channel).catch(this.#host.onError)
    }
  }

  async cancel (key: string): Promise<boolean> {
    return Number(await this.#run(scripts.cancel, [this.#hash(key)], [this.#cancelChannel(key)])) === 1
  }

  async delete (key: string): Promise<boolean> {
    return Number(await this.#run(scripts.delete, this.#keys(key), [])) === 1
  }

  /** Closes the subscriber connection; the command connection belongs to the Redis store. */
  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#sweeper)
    this.#sweeper = undefined
    this.#sub?.disconnect()
  }

  #hash (key: string): string { return `${this.#host.prefix}:r:${key}` }
  #cancelChannel (key: string): string { return `${this.#host.prefix}:rx:${key}` }
  #keys (key: string): string[] { return [this.#hash(key), `${this.#host.prefix}:rf:${key}`] }

  #open (): void {
    if (this.#closed) throw new FST_SSE_RUNS_CLOSED()
  }

  async #run (script: Script, keys: string[], args: Array<string | number | Buffer>): Promise<unknown> {
    this.#open()
    return await this.#host.command(() => script.run(this.#host.client, keys, args))
  }

  #forget (channels: Map<string, Set<unknown>>, channel: string): void {
    channels.delete(channel)
    this.#subscribed.delete(channel)
    if (this.#frames.size === 0) {
      clearInterval(this.#sweeper)
      this.#sweeper = undefined
    }
  }

  #subscriber (): Redis {
    if (this.#sub !== undefined) return this.#sub
    // The store subscribes again itself after a reconnection: ioredis 5's autoResubscribe leaves a failure of its
    // SUBSCRIBE unhandled (a connection closed meanwhile was an unhandled rejection, which ends a process).
    const sub = this.#host.client.duplicate({ maxRetriesPerRequest: null, autoResubscribe: false, enableOfflineQueue: true })
    let dropped = false
    sub.on('error', this.#host.onError)
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.#message(channel.toString(), message))
    // Messages published while the connection is away are lost: every listener is told, and readers resume.
    sub.on('close', () => {
      dropped = true
      const err = new FST_SSE_STORE_UNAVAILABLE('the run subscriber connection closed')
      for (const listeners of this.#frames.values()) for (const listener of Array.from(listeners)) listener.fail(err)
    })
    sub.on('ready', () => {
      if (!dropped || this.#subscribed.size === 0) return
      dropped = false
      sub.subscribe(...this.#subscribed.keys()).catch(this.#host.onError)
    })
    this.#sub = sub
    return sub
  }

  #message (channel: string, message: Buffer): void {
    const cancels = this.#cancels.get(channel)
    if (cancels !== undefined) for (const onCancel of Array.from(cancels)) onCancel()
    const listeners = this.#frames.get(channel)
    if (listeners === undefined) return
    // Parsed once for every reader of the run on this instance.
    const { id, first, ended, frames } = parseFrames(message)
    for (const listener of Array.from(listeners)) listener.frames(id, first, frames, ended)
  }

  /** Ends the runs read here whose owner's lease ran out (their owner died, or lost Redis for longer). */
  readonly #sweep = (): void => {
    const keys = Array.from(this.#frames.keys(), channel => channel.slice(this.#host.prefix.length + 3))
    for (let start = 0; start < keys.length; start += MAX_BATCH_RUNS) {
      this.#run(scripts.sweep, keys.slice(start, start + MAX_BATCH_RUNS).flatMap(key => this.#keys(key)), []).catch((err: unknown) => {
        this.#host.log.warn({ err }, 'event runs lease check failed; trying again')
      })
    }
  }
}

function record (key: string, fields: Buffer[]): RunRecord {
  const [id, state, count, bytes, protocol] = fields.map(field => field.toString())
  return { key, id, state: state as RunState, count: Number(count), bytes: Number(bytes), protocol: protocol as RunProtocol }
}

/** "f\n<id>\n<first>\n<ended>\n<len,…>\n<frames>": the frames as views of the message, one Buffer each for every listener. */
function parseFrames (message: Buffer): { id: string, first: number, ended: boolean, frames: Buffer[] } {
  const lines: string[] = []
  let at = 2
  for (let i = 0; i < 4; i++) {
    const end = message.indexOf(NL, at)
    lines.push(message.toString('latin1', at, end))
    at = end + 1
  }
  const frames: Buffer[] = []
  for (const length of lines[3].split(',')) {
    frames.push(message.subarray(at, at + Number(length)))
    at += Number(length)
  }
  return { id: lines[0], first: Number(lines[1]), ended: lines[2] === '1', frames }
}
