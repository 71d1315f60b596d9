import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { injectEventStream, type ParsedEvent, type RunSource, type StartOptions } from '../../index.js'

/** A source fed by the test: push() items, end() it, fail() it; `stopped` resolves when its cleanup ran. */
export interface Pushable extends AsyncIterable<unknown> {
  push: (...items: unknown[]) => void
  end: () => void
  fail: (err: Error) => void
  readonly stopped: Promise<void>
  /** How many times it was iterated (a run pulls its source once). */
  readonly pulls: number
}

export function pushable (): Pushable {
  const items: unknown[] = []
  let wake: (() => void) | undefined
  let ended = false
  let error: Error | undefined
  let pulls = 0
  let onStopped!: () => void
  const stopped = new Promise<void>(resolve => { onStopped = resolve })
  const poke = (): void => { wake?.(); wake = undefined }
  // By hand rather than an async generator: return() must reach a source that waits for its next item, as the AI
  // SDK's streams and a Readable do.
  const iterator: AsyncIterator<unknown> = {
    async next () {
      // eslint-disable-next-line no-unmodified-loop-condition -- push(), fail() and end() change them while this waits
      while (items.length === 0 && error === undefined && !ended) await new Promise<void>(resolve => { wake = resolve })
      if (items.length > 0) return { value: items.shift(), done: false }
      if (error !== undefined) throw error
      return { value: undefined, done: true }
    },
    async return () {
      ended = true
      onStopped()
      poke()
      return { value: undefined, done: true }
    }
  }
  return {
    push: (...more) => { items.push(...more); poke() },
    end: () => { ended = true; poke() },
    fail: err => { error = err; poke() },
    stopped,
    get pulls () { return pulls },
    [Symbol.asyncIterator]: () => { pulls++; return iterator }
  }
}

/** A run app: POST /runs/:key starts (and streams) a run from the source the test hands in; GET /runs/:key reads it. */
export function runRoutes (app: FastifyInstance, sources: (key: string) => RunSource, options: StartOptions = {}): void {
  app.post<{ Params: { key: string } }>('/runs/:key', async (request, reply) => {
    await app.eventRuns.stream(reply, request.params.key, () => sources(request.params.key), options)
  })
  app.get<{ Params: { key: string } }>('/runs/:key', async (request, reply) => {
    await app.eventRuns.read(reply, request.params.key)
  })
  app.delete<{ Params: { key: string } }>('/runs/:key', async (request) => {
    return { cancelled: await app.eventRuns.cancel(request.params.key) }
  })
}

/** Reads a run's events through inject until the stream ends (or `count` events arrived, then leaves). */
export async function readRun (t: Test, app: FastifyInstance, key: string, headers: Record<string, string> = {}, count = Infinity): Promise<{ status: number, events: ParsedEvent[] }> {
  const response = await injectEventStream(app, { url: `/runs/${key}`, headers })
  t.teardown(() => response.close())
  const events: ParsedEvent[] = []
  if (response.statusCode !== 200) return { status: response.statusCode, events }
  for await (const event of response) {
    events.push(event)
    if (events.length >= count) break
  }
  return { status: response.statusCode, events }
}
