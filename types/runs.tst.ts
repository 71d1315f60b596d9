import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import fastifyEventStream, {
  EventRuns, MemoryRunStore, type RunEnd, type RunRecord, type RunStore, type RunsStats, type StartedRun
} from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const app = Fastify()
app.register(fastifyEventStream, { runs: { ttl: 60_000, lease: 5000, maxBytes: 1 << 20, maxRuns: 10, store: new MemoryRunStore() } })

test('runs options', () => {
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { runs: {} })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { runs: { ttl: '10m' } })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { runs: { store: {} } })
  expect<RunStore>().type.toBeAssignableFrom(new MemoryRunStore())
  expect<RunStore>().type.toBeAssignableFrom(new RedisStore({ connection: 'redis://127.0.0.1' }).runStore())
})

test('app.eventRuns: start, read, stream, cancel, delete, get', () => {
  expect(app.eventRuns).type.toBe<EventRuns>()
  async function * tokens (): AsyncGenerator<string> { yield 'a' }
  expect(app.eventRuns.start('chat-1', tokens())).type.toBe<Promise<StartedRun>>()
  expect(app.eventRuns.start).type.toBeCallableWith('chat-1', (signal: AbortSignal) => signal.aborted ? [] : tokens(), { protocol: 'ai-sdk' as const, replace: true })
  expect(app.eventRuns.start).type.toBeCallableWith('chat-1', async () => ['a', { data: 'b' }], { ifRunning: 'error' as const })
  expect(app.eventRuns.start).type.not.toBeCallableWith('chat-1', 'not a source')
  expect(app.eventRuns.start).type.not.toBeCallableWith('chat-1', ['a'], { protocol: 'sse' })
  expect(app.eventRuns.start).type.not.toBeCallableWith('chat-1', ['a'], { ifRunning: 'wait' })
  expect(app.eventRuns.get('chat-1')).type.toBe<Promise<RunRecord | null>>()
  expect(app.eventRuns.cancel('chat-1')).type.toBe<Promise<boolean>>()
  expect(app.eventRuns.delete('chat-1')).type.toBe<Promise<boolean>>()
  expect(app.eventRuns.stats()).type.toBe<RunsStats>()
  app.get('/', async (_request, reply) => {
    expect(app.eventRuns.read(reply, 'chat-1', { lastEventId: 'x.1' })).type.toBe<Promise<void>>()
    expect(app.eventRuns.stream(reply, 'chat-1', tokens())).type.toBe<Promise<StartedRun>>()
  })
})

test('a started run says how it ended', () => {
  const started = {} as StartedRun
  expect(started.done).type.toBe<Promise<RunEnd | 'lost'> | undefined>()
  expect(started.run.state).type.toBe<'running' | RunEnd>()
})
