// Runs across instances through Redis: real HTTP clients, two Fastify instances (and a killed third).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import fastifyEventStream, { type ParsedEvent, type RunsOptions } from '../../index.js'
import { RedisStore, type RedisStoreSettings } from '../../lib/stores/redis.js'
import { pushable, runRoutes, type Pushable } from '../runs/helpers.js'
import { SHARED_REDIS, redisServer, sseClient, sharedClient, uniquePrefix, until } from './helpers.js'

interface Instance { app: FastifyInstance, url: string, sources: Map<string, Pushable> }

/** An instance whose runs read from pushable sources the test feeds (made on first use of a key, per instance). */
async function instance (t: Test, prefix: string, options: { redis?: string, runs?: RunsOptions, store?: RedisStoreSettings } = {}): Promise<Instance> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  const store = new RedisStore({ connection: options.redis ?? SHARED_REDIS, prefix, leaseCheck: 100, ...options.store })
  await app.register(fastifyEventStream, { heartbeat: false, hub: { store }, runs: options.runs })
  const sources = new Map<string, Pushable>()
  runRoutes(app, key => {
    const source = pushable()
    sources.set(key, source)
    return source
  })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, sources }
}

/** An instance in a process of its own (lease 1 s), killed when the test ends, owning a run of `key` (1,000 tokens at 50/s). */
async function ownerProcess (t: Test, prefix: string, key: string): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['dist/bench/run-instance.js', SHARED_REDIS, prefix, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  // A child that dies before it is ready fails the test instead of leaving it waiting for a line.
  const exited = once(child, 'exit').then(([code, signal]) => { throw new Error(`the run instance exited before it was ready (${String(code ?? signal)})`) })
  exited.catch(() => {})
  const [line] = await Promise.race([once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line') as Promise<[string]>, exited])
  const port = Number(line.split(' ')[1])
  const started = await fetch(`http://127.0.0.1:${port}/runs/${key}?tokens=1000&rate=50`, { method: 'PUT' })
  t.same(await started.json(), { started: true }, 'the run started in its own process')
  return { child, port }
}

const texts = (events: ParsedEvent[]): string[] => events.map(event => event.type === 'message' ? event.data : `${event.type}:${event.data}`)

t.test('a run started on A is read on B from the start, live, to its end; the ids resume on either', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix)
  const b = await instance(t, prefix)
  const starter = await sseClient(t, `${a.url}/runs/chat-1`, undefined, 'POST')
  await until(() => a.sources.has('chat-1'), 'the source')
  const source = a.sources.get('chat-1') as Pushable
  source.push('Hel', 'lo')
  await starter.received(2)
  const onB = await sseClient(t, `${b.url}/runs/chat-1`)
  await onB.received(2)
  source.push(' world', { event: 'usage', json: { tokens: 3 } })
  await onB.received(4)
  const dropped = onB.lastEventId()
  onB.close()
  source.push('!')
  source.end()
  await starter.ended
  t.same(texts(starter.events), ['Hel', 'lo', ' world', 'usage:{"tokens":3}', '!', 'end:{"reason":"done"}'])
  const resumed = await sseClient(t, `${a.url}/runs/chat-1`, dropped)
  await resumed.ended
  t.same(texts(resumed.events), ['!', 'end:{"reason":"done"}'], 'resumed after its id on the other instance')
  t.same(texts(onB.events), texts(starter.events).slice(0, 4))
  const again = await sseClient(t, `${b.url}/runs/chat-1`, starter.lastEventId())
  await again.ended
  t.equal(again.events.length, 0, 'a reader that has the end gets 204')
})

t.test('a reader on the owner\'s instance is told by the owner, not through Redis; one on the other instance through Redis', async t => {
  const prefix = uniquePrefix(t)
  const [a, b] = [await instance(t, prefix), await instance(t, prefix)]
  const admin = sharedClient(t)
  const source = pushable()
  const { done } = await a.app.eventRuns.start('near-far', source)
  source.push('one')
  const onA = await sseClient(t, `${a.url}/runs/near-far`)
  await onA.received(1)
  const [, subscribers] = await admin.pubsub('NUMSUB', `${prefix}:r:near-far`) as [string, number]
  t.equal(subscribers, 0, 'nobody listens to the run\'s channel while only its owner\'s instance reads it')
  const onB = await sseClient(t, `${b.url}/runs/near-far`)
  await onB.received(1)
  const [, withB] = await admin.pubsub('NUMSUB', `${prefix}:r:near-far`) as [string, number]
  t.equal(withB, 1, 'the other instance listens through Redis')
  source.push('two', 'three')
  source.end()
  await onA.ended
  await onB.ended
  t.same(texts(onA.events), ['one', 'two', 'three', 'end:{"reason":"done"}'])
  t.same(texts(onB.events), texts(onA.events))
  t.equal(await done, 'done')
})

t.test('two instances racing to start one key run its source once', async t => {
  const prefix = uniquePrefix(t)
  const [a, b] = [await instance(t, prefix), await instance(t, prefix)]
  for (let round = 0; round < 10; round++) {
    const key = `race-${round}`
    const made: string[] = []
    const starts = await Promise.all([a, b, a, b].map(async (server, i) => await server.app.eventRuns.start(key, () => {
      made.push(String(i))
      return ['x']
    })))
    t.equal(starts.filter(start => start.started).length, 1, `${key}: one start won`)
    await starts.find(start => start.started)?.done
    t.equal(made.length, 1, `${key}: one execution`)
  }
})

t.test('cancel on B stops the source on A; readers on both get the reason', async t => {
  const prefix = uniquePrefix(t)
  const [a, b] = [await instance(t, prefix), await instance(t, prefix)]
  const source = pushable()
  let aborted: AbortSignal | undefined
  const { done } = await a.app.eventRuns.start('job-9', signal => { aborted = signal; return source })
  source.push('10%')
  const onA = await sseClient(t, `${a.url}/runs/job-9`)
  const onB = await sseClient(t, `${b.url}/runs/job-9`)
  await onA.received(1)
  await onB.received(1)
  t.equal(await b.app.eventRuns.cancel('job-9'), true)
  t.equal(await done, 'cancelled')
  await source.stopped
  t.equal(aborted?.aborted, true)
  await onA.ended
  await onB.ended
  t.same(texts(onB.events), ['10%', 'end:{"reason":"cancelled"}'])
  t.same(texts(onA.events), texts(onB.events))
  t.equal(await b.app.eventRuns.cancel('job-9'), false)
})

t.test('a store-level replace, delete and the lease of an ended run', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix, { runs: { ttl: 300 } })
  await (await a.app.eventRuns.start('k', ['one'])).done
  t.equal((await a.app.eventRuns.start('k', ['two'], { replace: true })).started, true)
  await until(async () => (await a.app.eventRuns.get('k'))?.state === 'done', 'the second run')
  const reader = await sseClient(t, `${a.url}/runs/k`)
  await reader.ended
  t.same(texts(reader.events), ['two', 'end:{"reason":"done"}'])
  t.equal(await a.app.eventRuns.delete('k'), true)
  t.equal(await a.app.eventRuns.get('k'), null)
  await (await a.app.eventRuns.start('k', ['three'])).done
  await until(async () => (await a.app.eventRuns.get('k')) === null, 'the TTL', 3000)
  const redis = sharedClient(t)
  t.same(await redis.keys(`${prefix}:r*`), [], 'nothing of the run is left in Redis')
})

t.test('a long run is stored whole and replayed in pages on another instance', async t => {
  const prefix = uniquePrefix(t)
  const [a, b] = [await instance(t, prefix), await instance(t, prefix)]
  const tokens = Array.from({ length: 2000 }, (_, i) => `token ${i} ${'é'.repeat(i % 5)}`)
  await (await a.app.eventRuns.start('long', tokens)).done
  const reader = await sseClient(t, `${b.url}/runs/long`)
  await reader.ended
  t.same(texts(reader.events), [...tokens, 'end:{"reason":"done"}'])
})

t.test('an owner killed with SIGKILL: readers elsewhere get interrupted within the lease, and the key starts again', async t => {
  const prefix = uniquePrefix(t)
  const b = await instance(t, prefix)
  const { child } = await ownerProcess(t, prefix, 'doomed')
  const onB = await sseClient(t, `${b.url}/runs/doomed`)
  await onB.received(5)
  child.kill('SIGKILL')
  const killed = Date.now()
  await onB.ended
  const waited = Date.now() - killed
  t.equal(onB.events.at(-1)?.data, '{"reason":"interrupted"}')
  t.ok(waited < 1000 + 100 + 1500, `ended ${waited} ms after the kill (lease 1000 ms, checked every 100 ms)`)
  const indices = onB.events.slice(0, -1).map(event => Number(event.data.split('|')[0]))
  t.same(indices, indices.map((_, i) => i), 'every token up to the kill, in order, once')
  const again = await b.app.eventRuns.start('doomed', ['fresh'])
  t.equal(again.started, true, 'an interrupted key starts again')
  await again.done
})

t.test('Redis restarting: readers close and resume; owners keep writing once it is back', async t => {
  const server = await redisServer(t)
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix, { redis: server.url, store: { timeout: 500 }, runs: { lease: 5000 } })
  const b = await instance(t, prefix, { redis: server.url, store: { timeout: 500 } })
  const source = pushable()
  const { done } = await a.app.eventRuns.start('through', source)
  source.push('before')
  const onB = await sseClient(t, `${b.url}/runs/through`)
  await onB.received(1)
  await server.kill()
  await onB.ended
  t.pass('the reader closed when its live connection went')
  await server.start()
  t.equal((await a.app.eventRuns.get('through')), null, 'a Redis without persistence lost the run')
  source.push('after')
  t.equal(await done, 'lost', 'its owner learns the run is gone and stops')
  await source.stopped
})

t.test('after Redis restarts, the owner listens for cancels again: a cancel from the other instance stops it at once, not at the renewal', async t => {
  const server = await redisServer(t, { persistent: true })
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix, { redis: server.url, store: { timeout: 500 }, runs: { lease: 60_000 } })
  const b = await instance(t, prefix, { redis: server.url, store: { timeout: 500 } })
  const source = pushable()
  const { done } = await a.app.eventRuns.start('survivor', source)
  source.push('kept')
  const admin = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 20 })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  const listening = async (): Promise<number> => ((await admin.pubsub('NUMSUB', `${prefix}:rx:survivor`)) as [string, number])[1]
  await until(async () => await listening() === 1, 'the owner listening for cancels')
  await server.kill()
  await server.start()
  await until(async () => await listening().catch(() => 0) === 1, 'the owner listening again after the restart')
  const asked = Date.now()
  t.equal(await b.app.eventRuns.cancel('survivor'), true)
  t.equal(await done, 'cancelled')
  t.ok(Date.now() - asked < 2000, `stopped ${Date.now() - asked} ms after the cancel (the renewal comes every 20 s)`)
  await source.stopped
})

t.test('leases are renewed while a run lives; a cancel whose message was missed arrives with the renewal', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix, { runs: { lease: 300 } })
  const source = pushable()
  const { done, run } = await a.app.eventRuns.start('long-lived', source)
  const redis = sharedClient(t)
  const leaseOf = async (): Promise<number> => Number(await redis.hget(`${prefix}:r:long-lived`, 'lease'))
  const first = await leaseOf()
  await until(async () => (await leaseOf()) > first, 'a renewal', 2000)
  t.equal((await a.app.eventRuns.get('long-lived'))?.state, 'running', 'a quiet run outlives its lease while renewed')
  // As if the cancel's message had been published while the owner's subscriber connection was away.
  await redis.hset(`${prefix}:r:long-lived`, 'cancel', '1')
  t.equal(await done, 'cancelled')
  t.equal(run.key, 'long-lived')
  await source.stopped
})

t.test('Redis away: listening fails with a coded error, the lease check logs and tries again', async t => {
  const server = await redisServer(t)
  const warnings: string[] = []
  const store = new RedisStore({ connection: server.url, prefix: '{runs-away}', timeout: 200, leaseCheck: 50, log: { warn: (_details, message) => warnings.push(message) } })
  t.teardown(() => store.close())
  const runs = store.runStore()
  t.equal(store.runStore(), runs, 'one run store per store')
  const listener = { frames: () => {}, cancel: () => {}, fail: () => {} }
  const stop = await runs.listen('k', listener)
  await server.kill()
  await until(() => warnings.includes('event runs lease check failed; trying again'), 'a failed lease check')
  await t.rejects(runs.listen('other', listener), { code: 'FST_SSE_STORE_UNAVAILABLE' })
  stop()
  await server.start()
  // The subscriber connection comes back on its own schedule: listening works again once it has.
  let again: (() => void) | undefined
  await until(async () => {
    again = await runs.listen('other', listener).catch(() => undefined)
    return again !== undefined
  }, 'listening again')
  again?.()
})

t.test('the run store on its own: many runs in one tick, two listeners of a run, an append sent again, a script error, a closed store', async t => {
  const prefix = uniquePrefix(t)
  const a = await instance(t, prefix)
  const starts = await Promise.all(Array.from({ length: 300 }, async (_, i) => await a.app.eventRuns.start(`many-${i}`, [`item ${i}`])))
  const ends = await Promise.all(starts.map(async start => await start.done))
  t.ok(ends.every(end => end === 'done'), '300 runs appended in one tick, in more than one script call')
  t.equal((await a.app.eventRuns.get('many-299'))?.count, 2)

  const store = new RedisStore({ connection: SHARED_REDIS, prefix, leaseCheck: 100 })
  const runs = store.runStore()
  const run = await runs.get('many-0') as NonNullable<Awaited<ReturnType<typeof runs.get>>>
  t.equal(await runs.read('many-0', 'another-run', 0, 10), null, 'another run of the key is not read')
  const seen: string[] = []
  const listener = (name: string) => ({ frames: () => { seen.push(name) }, fail: () => {} })
  const stopFirst = await runs.listen('shared', listener('first'))
  const stopSecond = await runs.listen('shared', listener('second'))
  stopFirst()
  stopFirst()
  t.pass('a listener stopped twice, while another listens')
  stopSecond()
  stopSecond()
  t.same(seen, [])

  // An append sent again (its answer was lost: a timeout, a reconnection) is taken as stored, and stored once.
  const claim = { id: 'again-1', protocol: 'events' as const, interrupted: { before: '', after: '' }, lease: 10_000, ttl: 60_000, replace: false }
  t.equal((await runs.claim('again', claim)).claimed, true)
  const delivered: string[] = []
  const stopAgain = await runs.listen('again', { frames: (_id, first, frames, ended) => { delivered.push(`${first}:${frames.join('+')}${ended ? ':end' : ''}`) }, fail: () => {} })
  const frame = (text: string): Buffer => Buffer.from(text)
  t.equal(await runs.append('again', 'again-1', 1, [frame('a'), frame('b')], undefined, 10_000), 'ok')
  t.equal(await runs.append('again', 'again-1', 1, [frame('a'), frame('b')], undefined, 10_000), 'ok', 'the same append again')
  t.equal(await runs.append('again', 'again-1', 5, [frame('e')], undefined, 10_000), 'lost', 'an append after a gap')
  t.equal(await runs.append('again', 'again-1', 3, [frame('c')], 'done', 10_000), 'ok')
  t.equal(await runs.append('again', 'again-1', 3, [frame('c')], 'done', 10_000), 'ok', 'the final append again')
  t.equal(await runs.append('again', 'again-1', 2, [frame('b')], undefined, 10_000), 'lost', 'a plain append to an ended run')
  t.same((await runs.read('again', 'again-1', 0, 10))?.frames.map(String), ['a', 'b', 'c'], 'each frame kept once')
  await until(() => delivered.length === 2, 'the stored appends delivered')
  t.same(delivered, ['1:a+b', '3:c:end'], 'only what was stored is delivered, once')
  stopAgain()

  const redis = sharedClient(t)
  await redis.set(`${prefix}:r:broken`, 'not a hash')
  await t.rejects(runs.get('broken'), /WRONGTYPE/, 'a Redis error reaches the caller')
  await store.close()
  await t.rejects(runs.get(run.key), { code: 'FST_SSE_RUNS_CLOSED' })
})

t.test('an owner stalled past its lease (SIGSTOP): readers elsewhere get interrupted; once it runs again its writes are refused', async t => {
  const prefix = uniquePrefix(t)
  const b = await instance(t, prefix)
  const { child, port } = await ownerProcess(t, prefix, 'stalled')
  const onB = await sseClient(t, `${b.url}/runs/stalled`)
  await onB.received(3)
  child.kill('SIGSTOP')
  await onB.ended
  t.equal(onB.events.at(-1)?.data, '{"reason":"interrupted"}', 'the lease ran out while the owner was stopped')
  const ended = await b.app.eventRuns.get('stalled')
  child.kill('SIGCONT')
  // The owner runs again: its next write is refused (the run is no longer its own) and it stops its source.
  await until(async () => JSON.parse(await (await fetch(`http://127.0.0.1:${port}/stats`)).text()).running === 0, 'the owner giving up')
  const after = await b.app.eventRuns.get('stalled')
  t.same(after, ended, 'nothing was written after the end')
  const indices = onB.events.slice(0, -1).map(event => Number(event.data.split('|')[0]))
  t.same(indices, indices.map((_, i) => i), 'every token up to the stop, in order, once')
})
