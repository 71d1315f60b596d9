import t from 'tap'
import {
  FST_SSE_INVALID_OPTION, FST_SSE_INVALID_RUN_KEY, FST_SSE_RUN_ACTIVE, FST_SSE_RUN_ENDED, FST_SSE_RUN_LIMIT, FST_SSE_RUNS_CLOSED,
  MemoryRunStore, MemoryStore, injectEventStream, type ParsedEvent, type RunStore
} from '../../index.js'
import http from 'node:http'
import { build, captureLogs, listen, tick, until } from '../helpers.js'
import { pushable, readRun, runRoutes, type Pushable } from './helpers.js'

const texts = (events: ParsedEvent[]): string[] => events.map(event => event.type === 'message' ? event.data : `${event.type}:${event.data}`)

t.test('a run streams to the request that started it, then ends with its final event and closes', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => ['a', 'b', { data: 'c', event: 'note' }, { event: 'chat', json: { text: 'd' } }])
  const response = await injectEventStream(app, { method: 'POST', url: '/runs/k1' })
  const events: ParsedEvent[] = []
  for await (const event of response) events.push(event)
  t.same(texts(events), ['a', 'b', 'note:c', 'chat:{"text":"d"}', 'end:{"reason":"done"}'])
  const run = await app.eventRuns.get('k1')
  t.equal(run?.state, 'done')
  t.same(events.map(event => event.id), [1, 2, 3, 4, 5].map(n => `${run?.id}.${n}`), 'ids are the run id and the index')
})

t.test('a late reader gets everything from the start, then the live tail, then the end', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  runRoutes(app, () => source)
  const started = await app.eventRuns.start('late', source)
  t.equal(started.started, true)
  source.push('one', 'two')
  await tick()
  await tick()
  const response = await injectEventStream(app, '/runs/late')
  t.equal(response.statusCode, 200)
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 2, 'the replay')
  source.push('three')
  await until(() => events.length === 3, 'the live event')
  source.end()
  await reading
  t.same(texts(events), ['one', 'two', 'three', 'end:{"reason":"done"}'])
  t.equal(await started.done, 'done')
})

t.test('a reader resumes after its Last-Event-ID with no gap and no duplicate, from any id of the run', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => ['x'])
  const items = Array.from({ length: 1200 }, (_, i) => `t${i}`)
  const { done } = await app.eventRuns.start('resume', items)
  await done
  const run = await app.eventRuns.get('resume')
  t.equal(run?.count, 1201, 'every item and the final frame, kept whole (past one replay page)')
  for (const after of [0, 1, 511, 512, 513, 1199]) {
    const { events } = await readRun(t, app, 'resume', after === 0 ? {} : { 'last-event-id': `${run?.id}.${after}` })
    t.same(texts(events), [...items.slice(after), 'end:{"reason":"done"}'], `after ${after}`)
  }
  const foreign = await readRun(t, app, 'resume', { 'last-event-id': 'someone-else.3' })
  t.equal(foreign.events.length, 1201, 'an id of another run replays from the start')
})

t.test('204 for a key without a run, and for a reader that has the final event already', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => ['a'])
  t.equal((await app.inject('/runs/nobody')).statusCode, 204)
  const { done } = await app.eventRuns.start('over', ['a'])
  await done
  const run = await app.eventRuns.get('over')
  const seenAll = await app.inject({ url: '/runs/over', headers: { 'last-event-id': `${run?.id}.2` } })
  t.equal(seenAll.statusCode, 204)
  const missedEnd = await readRun(t, app, 'over', { 'last-event-id': `${run?.id}.1` })
  t.same(texts(missedEnd.events), ['end:{"reason":"done"}'], 'a reader that missed only the end gets the end again')
})

t.test('the lastEventIdQuery parameter places a reader when there is no header', async t => {
  const app = await build(t, { heartbeat: false, lastEventIdQuery: 'since' })
  runRoutes(app, () => [])
  const { done, run } = await app.eventRuns.start('q', ['a', 'b'])
  await done
  const response = await injectEventStream(app, `/runs/q?since=${run.id}.1`)
  const events: ParsedEvent[] = []
  for await (const event of response) events.push(event)
  t.same(texts(events), ['b', 'end:{"reason":"done"}'])
})

t.test('a key runs its source once: concurrent starts attach, or fail with FST_SSE_RUN_ACTIVE', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  let made = 0
  const factory = (): Pushable => { made++; return source }
  const starts = await Promise.all(Array.from({ length: 5 }, () => app.eventRuns.start('once', factory)))
  t.equal(starts.filter(start => start.started).length, 1)
  t.equal(made, 1, 'the factory is called by the winner only')
  await t.rejects(app.eventRuns.start('once', factory, { ifRunning: 'error' }), FST_SSE_RUN_ACTIVE)
  const loser = pushable()
  const attached = await app.eventRuns.start('once', loser)
  t.equal(attached.started, false)
  t.equal(attached.done, undefined)
  await loser.stopped
  t.pass('a source handed to a start that lost is stopped, so its cleanup runs')
  source.end()
  t.equal(await starts.find(start => start.started)?.done, 'done')
  t.equal(source.pulls, 1)
})

t.test('an ended run holds its key until its TTL, a delete, or a start with replace', async t => {
  const app = await build(t, { heartbeat: false, runs: { ttl: 200 } })
  runRoutes(app, () => [])
  await (await app.eventRuns.start('kept', ['first'])).done
  await t.rejects(app.eventRuns.start('kept', ['second']), FST_SSE_RUN_ENDED)
  t.equal(await app.eventRuns.delete('kept'), true)
  t.equal(await app.eventRuns.delete('kept'), false)
  await (await app.eventRuns.start('kept', ['second'])).done
  const replaced = await app.eventRuns.start('kept', ['third'], { replace: true })
  t.equal(replaced.started, true)
  await replaced.done
  t.same(texts((await readRun(t, app, 'kept')).events), ['third', 'end:{"reason":"done"}'])
  await new Promise(resolve => setTimeout(resolve, 350))
  t.equal((await app.inject('/runs/kept')).statusCode, 204, 'gone after its TTL')
  t.equal((await app.eventRuns.start('kept', ['fourth'])).started, true)
})

t.test('a running run is not deleted, and replace never takes a running one over', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  const { done } = await app.eventRuns.start('busy', source)
  t.equal(await app.eventRuns.delete('busy'), false)
  t.equal((await app.eventRuns.start('busy', [], { replace: true })).started, false)
  source.end()
  await done
})

t.test('cancel stops the source (its cleanup runs, its signal aborts) and readers get the reason', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  let signal: AbortSignal | undefined
  runRoutes(app, () => source)
  const { done } = await app.eventRuns.start('stop', s => { signal = s; return source })
  source.push('a')
  const response = await injectEventStream(app, '/runs/stop')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 1, 'the first token')
  t.same((await app.inject({ method: 'DELETE', url: '/runs/stop' })).json(), { cancelled: true })
  await reading
  await source.stopped
  t.equal(signal?.aborted, true)
  t.equal(await done, 'cancelled')
  t.same(texts(events), ['a', 'end:{"reason":"cancelled"}'])
  t.equal(await app.eventRuns.cancel('stop'), false, 'nothing to cancel once it ended')
  t.equal(await app.eventRuns.cancel('never'), false)
})

t.test('a cancel through the store reaches the owner (as from another instance)', async t => {
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('remote', source)
  source.push('a')
  const response = await injectEventStream(app, '/runs/remote')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 1, 'the first token')
  t.equal(await store.cancel('remote'), true)
  t.equal(await done, 'cancelled')
  await source.stopped
  await reading
  t.same(texts(events), ['a', 'end:{"reason":"cancelled"}'], 'a reader hears of the cancel through the final event')
})

t.test('a source that throws ends the run as failed, after the onError item', async t => {
  const { logger, lines } = captureLogs('error')
  const app = await build(t, { heartbeat: false }, { logger })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('boom', source, { onError: err => ({ event: 'oops', data: (err as Error).message }) })
  source.push('a')
  source.fail(new Error('model down'))
  t.equal(await done, 'failed')
  t.same(texts((await readRun(t, app, 'boom')).events), ['a', 'oops:model down', 'end:{"reason":"failed"}'])
  t.ok(lines.some(line => line.msg === 'run source failed; ending the run'))
})

t.test('a factory that throws, or a source that is not iterable, fails the run; a throwing onError is logged', async t => {
  const { logger, lines } = captureLogs('error')
  const app = await build(t, { heartbeat: false }, { logger })
  runRoutes(app, () => [])
  const thrown = await app.eventRuns.start('f1', () => { throw new Error('no model') }, { onError: () => { throw new Error('worse') } })
  t.equal(await thrown.done, 'failed')
  const notIterable = await app.eventRuns.start('f2', () => 42 as never)
  t.equal(await notIterable.done, 'failed')
  t.same(texts((await readRun(t, app, 'f2')).events), ['end:{"reason":"failed"}'])
  t.ok(lines.some(line => line.msg === 'run onError failed'))
  const badItem = await app.eventRuns.start('f3', [{ nothing: true }])
  t.equal(await badItem.done, 'failed', 'an item of no known shape fails the run')
})

t.test('a run that crosses maxBytes ends with reason overflow, its last frame whole', async t => {
  const app = await build(t, { heartbeat: false, runs: { maxBytes: 100 } })
  runRoutes(app, () => [])
  const source = pushable()
  const { done, run } = await app.eventRuns.start('big', source)
  source.push('x'.repeat(40), 'y'.repeat(40), 'z'.repeat(40))
  t.equal(await done, 'overflow')
  await source.stopped
  const { events } = await readRun(t, app, 'big')
  t.same(texts(events), ['x'.repeat(40), 'end:{"reason":"overflow"}'])
  t.ok((await app.eventRuns.get('big'))?.bytes as number <= 100 + 80, `${run.key} keeps only whole frames`)
})

t.test('a tick of tokens is one store write', async t => {
  const store = new MemoryRunStore()
  const appends: number[] = []
  const append = store.append.bind(store)
  store.append = async (key, id, first, frames, end, lease, ttl) => {
    appends.push(frames.length)
    return await append(key, id, first, frames, end, lease, ttl)
  }
  const app = await build(t, { heartbeat: false, runs: { store } })
  const source = pushable()
  const { done } = await app.eventRuns.start('batch', source)
  source.push(...Array.from({ length: 50 }, (_, i) => String(i)))
  await until(() => appends.length > 0, 'a write')
  source.end()
  await done
  t.same(appends, [50, 1], 'fifty tokens in one write, then the final frame')
  appends.length = 0
  const large = Array.from({ length: 1200 }, () => 'x'.repeat(1000))
  await (await app.eventRuns.start('large', large)).done
  t.ok(appends.length >= 3 && appends.every(count => count <= 500), `a great tick goes in bounded writes (${appends.join()})`)
  t.equal(appends.reduce((sum, count) => sum + count, 0), 1201)
})

t.test('maxRuns bounds the runs of an instance; bad keys and options are coded errors that keep nothing', async t => {
  const app = await build(t, { heartbeat: false, runs: { maxRuns: 1 } })
  const source = pushable()
  const { done } = await app.eventRuns.start('one', source)
  const refused = pushable()
  await t.rejects(app.eventRuns.start('two', refused), FST_SSE_RUN_LIMIT)
  await refused.stopped
  for (const key of ['', 'a/b', 'a b', 'x'.repeat(129), 'ключ', 42]) {
    await t.rejects(app.eventRuns.start(key as string, []), FST_SSE_INVALID_RUN_KEY, JSON.stringify(key))
  }
  await t.rejects(app.eventRuns.read({} as never, '../etc'), FST_SSE_INVALID_RUN_KEY)
  await t.rejects(app.eventRuns.get('a*'), FST_SSE_INVALID_RUN_KEY)
  await t.rejects(app.eventRuns.cancel('a*'), FST_SSE_INVALID_RUN_KEY)
  await t.rejects(app.eventRuns.delete('a*'), FST_SSE_INVALID_RUN_KEY)
  await t.rejects(app.eventRuns.start('ok', [], { protocol: 'x' as never }), FST_SSE_INVALID_OPTION)
  await t.rejects(app.eventRuns.start('ok', [], { ifRunning: 'x' as never }), FST_SSE_INVALID_OPTION)
  await t.rejects(app.eventRuns.start('ok', [], { replace: 1 as never }), FST_SSE_INVALID_OPTION)
  await t.rejects(app.eventRuns.start('ok', [], { onError: 1 as never }), FST_SSE_INVALID_OPTION)
  t.equal(await app.eventRuns.get('ok'), null)
  t.equal((await app.inject('/runs/a%2Fb')).statusCode, 404)
  t.same(app.eventRuns.stats(), { running: 1, started: 1, readers: 0 })
  source.end()
  await done
  t.equal(app.eventRuns.stats().running, 0)
})

t.test('a key from a URL that is invalid answers 400', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => [])
  const response = await app.inject('/runs/a*b')
  t.equal(response.statusCode, 400)
  t.equal(response.json().code, 'FST_SSE_INVALID_RUN_KEY')
})

t.test('the plugin validates the runs options', async t => {
  for (const runs of [{ ttl: 0 }, { lease: 50 }, { lease: 1.5 }, { maxBytes: -1 }, { maxRuns: 'x' }, { store: {} }]) {
    await t.rejects(build(t, { runs: runs as never }), FST_SSE_INVALID_OPTION, JSON.stringify(runs))
  }
})

t.test('shutdown ends the runs of the instance as interrupted; readers get it before their streams close', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('deploy', source)
  source.push('a')
  const response = await injectEventStream(app, '/runs/deploy')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 1, 'the first token')
  await app.close()
  await reading
  t.equal(await done, 'interrupted')
  await source.stopped
  t.same(texts(events), ['a', 'end:{"reason":"interrupted"}'])
  await t.rejects(app.eventRuns.start('late', []), FST_SSE_RUNS_CLOSED)
  await t.rejects(app.eventRuns.read({} as never, 'late'), FST_SSE_RUNS_CLOSED)
})

t.test('a shutdown does not wait for a store that never answers', async t => {
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store, lease: 200 } })
  const source = pushable()
  await app.eventRuns.start('stuck', source)
  store.append = () => new Promise(() => {})
  const closing = Date.now()
  await app.close()
  t.ok(Date.now() - closing < 2000, 'closed within the lease bound')
})

t.test('a store that fails while the owner writes: retried, then the run is given up after the lease', async t => {
  const { logger, lines } = captureLogs('warn')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store, lease: 300 } }, { logger })
  const source = pushable()
  const { done } = await app.eventRuns.start('flaky', source)
  const append = store.append.bind(store)
  let failures = 0
  store.append = async (...args) => {
    if (failures++ < 2) throw new Error('store away')
    return await append(...args)
  }
  source.push('a')
  await until(() => failures >= 3, 'two retries')
  t.ok(lines.some(line => line.msg === 'run store write failed; retrying'))
  store.append = async () => { throw new Error('store gone') }
  source.push('b')
  t.equal(await done, 'lost')
  t.ok(lines.some(line => line.msg === 'run store unavailable for longer than the lease; giving the run up'))
  await source.stopped
  store.append = append
  const run = await store.get('flaky')
  t.equal(run?.count, 1, 'what the store took is kept')
})

t.test('renewal: a run whose store says lost or cancelled stops; a failing renewal gives up after the lease', async t => {
  const { logger, lines } = captureLogs('warn')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store, lease: 150 } }, { logger })
  const lost = pushable()
  const first = await app.eventRuns.start('lost', lost)
  await store.delete('lost').then(() => {})
  // A store whose run vanished (expired, flushed) answers lost.
  ;(store as RunStore).renew = async runs => runs.map(() => 'lost')
  t.equal(await first.done, 'lost')
  await lost.stopped
  ;(store as RunStore).renew = async () => { throw new Error('renew failed') }
  const silent = pushable()
  const second = await app.eventRuns.start('silent', silent)
  t.equal(await second.done, 'lost')
  t.ok(lines.some(line => line.msg === 'run store failed to renew the leases of this instance\'s runs'))
  ;(store as RunStore).renew = async runs => runs.map(() => 'cancelled')
  const third = await app.eventRuns.start('remote-cancel', pushable())
  t.equal(await third.done, 'cancelled')
})

t.test('a reader whose run is replaced or whose store fails is closed, so its client resumes', async t => {
  const { logger, lines } = captureLogs('info')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } }, { logger })
  runRoutes(app, () => [])
  const source = pushable()
  await app.eventRuns.start('swap', source)
  source.push('a')
  const response = await injectEventStream(app, '/runs/swap')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 1, 'the first token')
  // Another run's frames on the key: what a replace on another instance looks like to a reader.
  const listeners: Array<Parameters<RunStore['listen']>[1]> = []
  const listen = store.listen.bind(store)
  store.listen = async (key, listener) => { listeners.push(listener); return await listen(key, listener) }
  const other = await injectEventStream(app, '/runs/swap')
  const otherEvents: ParsedEvent[] = []
  const otherReading = (async () => { for await (const event of other) otherEvents.push(event) })()
  await until(() => otherEvents.length === 1 && listeners.length === 1, 'a second reader')
  listeners[0].frames('another-run', 1, [Buffer.from('data: x\n\n')], false)
  await otherReading
  t.ok(lines.some(line => line.msg === 'run reader closed: the key holds another run now'))
  source.end()
  await reading
  const failing = pushable()
  await app.eventRuns.start('fails', failing)
  const third = await injectEventStream(app, '/runs/fails')
  const thirdReading = (async () => { for await (const event of third) t.ok(event) })()
  await until(() => listeners.length === 2, 'listening')
  listeners[1].fail(new Error('connection lost'))
  await thirdReading
  t.ok(lines.some(line => line.msg.startsWith('run store cannot deliver the run without a gap')))
  failing.end()
})

t.test('a hub store that keeps runs too (as the Redis store does) is where runs live', async t => {
  const runStore = new MemoryRunStore()
  const store = Object.assign(new MemoryStore(), { runStore: () => runStore })
  const app = await build(t, { heartbeat: false, hub: { store } })
  await (await app.eventRuns.start('shared', ['a'])).done
  t.equal((await runStore.get('shared'))?.state, 'done')
})

t.test('an owner that cannot listen for cancels still runs, and learns of a cancel at the renewal', async t => {
  const { logger, lines } = captureLogs('warn')
  const store = new MemoryRunStore()
  store.listenCancel = async () => { throw new Error('no listening') }
  const app = await build(t, { heartbeat: false, runs: { store, lease: 150 } }, { logger })
  const source = pushable()
  const { done } = await app.eventRuns.start('deaf', source)
  t.equal(await store.cancel('deaf'), true)
  t.equal(await done, 'cancelled')
  t.ok(lines.some(line => line.msg === 'run store could not listen for cancels; relying on the lease renewal'))
})

t.test('a write retried while the renewal finds the run lost stops retrying', async t => {
  const { logger } = captureLogs('warn')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store, lease: 600 } }, { logger })
  const source = pushable()
  const { done } = await app.eventRuns.start('gone', source)
  let attempts = 0
  store.append = async () => { attempts++; throw new Error('store away') }
  ;(store as RunStore).renew = async runs => runs.map(() => 'lost')
  source.push('a')
  t.equal(await done, 'lost')
  const settled = attempts
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(attempts, settled, 'no write after the run was lost')
})

t.test('a reader whose replay read fails is closed; one that sees a hole in live frames is closed too', async t => {
  const { logger, lines } = captureLogs('warn')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } }, { logger })
  runRoutes(app, () => [])
  const source = pushable()
  await app.eventRuns.start('holes', source)
  source.push('a')
  const read = store.read.bind(store)
  store.read = async () => { throw new Error('read failed') }
  const failed = await app.inject('/runs/holes')
  t.equal(failed.statusCode, 500, 'a store that fails before the stream opens answers with its error')
  t.equal(failed.headers['content-type'], 'application/json; charset=utf-8')
  store.read = read
  const listeners: Array<Parameters<RunStore['listen']>[1]> = []
  const listen = store.listen.bind(store)
  store.listen = async (key, listener) => { listeners.push(listener); return await listen(key, listener) }
  const holed = await injectEventStream(app, '/runs/holes')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of holed) events.push(event) })()
  await until(() => events.length === 1 && listeners.length === 1, 'the replay')
  const run = await store.get('holes')
  listeners[0].frames(run?.id as string, 3, [Buffer.from('data: x\n\n')], false)
  await reading
  t.same(texts(events), ['a'], 'nothing after the hole')
  t.ok(lines.some(line => line.msg.startsWith('run store cannot deliver the run without a gap')))
  source.end()
})

t.test('a reader that replays while the run goes on gets the live frames after, once each', async t => {
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('busy-read', source)
  source.push('a')
  await new Promise(resolve => setTimeout(resolve, 20))
  const read = store.read.bind(store)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let gated = 0
  store.read = async (...args) => {
    // The first read waits while the owner appends: those frames arrive live and in the page both.
    if (gated++ === 0) await gate
    return await read(...args)
  }
  // The stream opens once the first read answered: the request waits for it.
  const opening = injectEventStream(app, '/runs/busy-read')
  await until(() => gated === 1, 'the gated read')
  source.push('b', 'c')
  await new Promise(resolve => setTimeout(resolve, 30))
  release()
  const response = await opening
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of response) events.push(event) })()
  await until(() => events.length === 3, 'the replay and the pending frames')
  source.push('d')
  source.end()
  await reading
  await done
  t.same(texts(events), ['a', 'b', 'c', 'd', 'end:{"reason":"done"}'])
})

t.test('a reader whose run was replaced between get() and read(), or who left while listening began', async t => {
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } })
  runRoutes(app, () => [])
  await (await app.eventRuns.start('moved', ['a'])).done
  const read = store.read.bind(store)
  store.read = async () => null
  const response = await app.inject('/runs/moved')
  t.equal(response.statusCode, 503, 'a key replaced under every read gives up')
  t.equal(response.json().code, 'FST_SSE_STORE_UNAVAILABLE')
  let nulls = 1
  store.read = async (...args) => nulls-- > 0 ? null : await read(...args)
  t.same(texts((await readRun(t, app, 'moved')).events), ['a', 'end:{"reason":"done"}'], 'replaced once: the run the key holds now is read')
  store.read = read
  const listenOnce = store.listen.bind(store)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let stopped = 0
  store.listen = async (key, listener) => {
    await gate
    const stop = await listenOnce(key, listener)
    return () => { stopped++; stop() }
  }
  let listening = false
  const listenGated = store.listen
  store.listen = async (key, listener) => { listening = true; return await listenGated(key, listener) }
  const request = http.get(`${await listen(app)}/runs/moved`, { agent: false })
  request.on('error', () => {})
  await until(() => listening, 'the reader listening')
  request.destroy()
  await new Promise(resolve => setTimeout(resolve, 20))
  release()
  await until(() => stopped === 1, 'the listener removed')
  t.equal(app.eventRuns.stats().readers, 0)
})

t.test('runs close once; a source that loses the claim and is not iterable is left alone', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  const { done } = await app.eventRuns.start('taken', source)
  const lost = await app.eventRuns.start('taken', {} as never)
  t.equal(lost.started, false)
  await app.eventRuns.close()
  await app.eventRuns.close()
  t.equal(await done, 'interrupted')
})

t.test('a source faster than the store is held back past 256 KiB waiting, and resumes when the store took it', async t => {
  const store = new MemoryRunStore()
  const append = store.append.bind(store)
  let release!: () => void
  let gate = new Promise<void>(resolve => { release = resolve })
  const appends: number[] = []
  store.append = async (...args) => {
    appends.push(args[3].length)
    await gate
    return await append(...args)
  }
  const app = await build(t, { heartbeat: false, runs: { store } })
  let pulled = 0
  async function * big (): AsyncGenerator<string> {
    for (let i = 0; i < 8; i++) {
      pulled++
      yield 'x'.repeat(100 * 1024)
      await new Promise(resolve => setImmediate(resolve))
    }
  }
  const { done } = await app.eventRuns.start('held', big())
  await until(() => pulled >= 4, 'items past the bound')
  await new Promise(resolve => setTimeout(resolve, 30))
  t.ok(pulled <= 5, `the source waits while the store holds the first write (${pulled} pulled)`)
  release()
  t.equal(await done, 'done')
  t.equal(pulled, 8)
  t.equal(appends.reduce((sum, count) => sum + count, 0), 9, 'every item and the final frame, in writes one after the other')
  gate = Promise.resolve()

  // A cancel while the source is held back ends the run at once.
  gate = new Promise<void>(resolve => { release = resolve })
  pulled = 0
  const second = await app.eventRuns.start('held-cancel', big())
  await until(() => pulled >= 4, 'items past the bound')
  await app.eventRuns.cancel('held-cancel')
  release()
  t.equal(await second.done, 'cancelled')
})

t.test('a cancel that comes before the source was first pulled ends the run without pulling it', async t => {
  const app = await build(t, { heartbeat: false })
  const source = pushable()
  const { done } = await app.eventRuns.start('early', source)
  t.equal(await app.eventRuns.cancel('early'), true)
  t.equal(await done, 'cancelled')
  await source.stopped
})

t.test('a cancel during a synchronous source stops it before its next item', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => [])
  function * items (): Generator<string> {
    yield 'a'
    app.eventRuns.cancel('sync').catch(() => {})
    yield 'b'
    yield 'c'
  }
  const { done } = await app.eventRuns.start('sync', items())
  t.equal(await done, 'cancelled')
  t.same(texts((await readRun(t, app, 'sync')).events), ['a', 'b', 'end:{"reason":"cancelled"}'])
})

t.test('a later page that fails or finds another run closes the stream; news of either before the stream opens closes it at once', async t => {
  const { logger, lines } = captureLogs('info')
  const store = new MemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } }, { logger })
  runRoutes(app, () => [])
  await (await app.eventRuns.start('pages', Array.from({ length: 600 }, (_, i) => `t${i}`))).done
  const read = store.read.bind(store)
  for (const [second, message] of [
    [async () => { throw new Error('second page failed') }, 'run store failed while a reader replayed; closing the stream'],
    [async () => null, 'run reader closed: the key holds another run now']
  ] as const) {
    let calls = 0
    store.read = async (...args) => calls++ === 0 ? await read(...args) : await second()
    const { events } = await readRun(t, app, 'pages')
    t.equal(events.length, 512, 'the first page, then the stream closes')
    t.ok(lines.some(line => line.msg === message), message)
  }
  const listen = store.listen.bind(store)
  for (const [news, message] of [
    [(listener: Parameters<RunStore['listen']>[1]) => listener.fail(new Error('gone')), 'run reader closed: the store failed'],
    [(listener: Parameters<RunStore['listen']>[1]) => listener.frames('another', 1, [], false), 'run reader closed: the key holds another run now']
  ] as const) {
    let heard: Parameters<RunStore['listen']>[1] | undefined
    store.listen = async (key, listener) => { heard = listener; return await listen(key, listener) }
    store.read = async (...args) => { news(heard as Parameters<RunStore['listen']>[1]); return await read(...args) }
    const before = lines.length
    const { status, events } = await readRun(t, app, 'pages')
    t.equal(status, 200)
    t.equal(events.length, 0, 'closed as it opened')
    t.ok(lines.slice(before).some(line => line.msg === message), message)
  }
})

t.test('a run this instance lost, still ending when its key starts here again, leaves the new owner in place', async t => {
  const store = new MemoryRunStore()
  const append = store.append.bind(store)
  const renew = store.renew.bind(store)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const app = await build(t, { heartbeat: false, runs: { store, lease: 150 } })
  const first = pushable()
  const old = await app.eventRuns.start('again', first)
  store.append = async (...args) => { await gate; return await append(...args) }
  first.push('a')
  await new Promise(resolve => setTimeout(resolve, 20))
  // Another instance ended the run meanwhile (its lease check, say): the store says so at the next renewal.
  t.equal(await append('again', old.run.id, 1, [Buffer.from('data: end\n\n')], 'interrupted', 150, 1000), 'ok')
  ;(store as RunStore).renew = async runs => runs.map(run => run.id === old.run.id ? 'lost' : 'ok')
  await first.stopped
  store.append = append
  const second = await app.eventRuns.start('again', pushable())
  t.equal(second.started, true)
  release()
  t.equal(await old.done, 'lost')
  t.equal(app.eventRuns.stats().running, 1, 'the new owner is still this instance\'s')
  store.renew = renew
  t.equal(await app.eventRuns.cancel('again'), true)
  t.equal(await second.done, 'cancelled')
})

t.test('an iterator that answers something other than an iterator result fails the run, and nothing throws', async t => {
  const app = await build(t, { heartbeat: false })
  runRoutes(app, () => [])
  const broken = { [Symbol.asyncIterator]: () => ({ next: async () => undefined as never }) }
  t.equal(await (await app.eventRuns.start('broken-async', broken)).done, 'failed')
  const brokenSync = { [Symbol.iterator]: () => ({ next: () => null as never }) }
  t.equal(await (await app.eventRuns.start('broken-sync', brokenSync)).done, 'failed')
  t.same(texts((await readRun(t, app, 'broken-sync')).events), ['end:{"reason":"failed"}'])
})

/** A memory store that says it is remote: readers on the owner's instance are then told by the owner. */
class RemoteMemoryRunStore extends MemoryRunStore {
  readonly remote = true
  listens = 0
  override async listen (key: string, listener: Parameters<RunStore['listen']>[1]): Promise<() => void> {
    this.listens++
    return await super.listen(key, listener)
  }
}

t.test('with a remote store, a reader on the owner\'s instance hears from the owner once each write is stored', async t => {
  const store = new RemoteMemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store } })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('near', source)
  source.push('a', 'b')
  while ((await store.get('near'))?.count !== 2) await tick()
  // Each live frame is written to the store before the owner tells the readers here.
  const append = store.append.bind(store)
  let stored = 0
  store.append = async (...args) => { const result = await append(...args); stored = (await store.get('near'))?.count ?? 0; return result }
  const response = await injectEventStream(app, '/runs/near')
  const events: ParsedEvent[] = []
  const counts: number[] = []
  const reading = (async () => { for await (const event of response) { events.push(event); counts.push(stored) } })()
  await until(() => events.length === 2, 'the replay')
  source.push('c')
  await until(() => events.length === 3, 'a live frame')
  source.push('d', 'e')
  source.end()
  await reading
  t.same(texts(events), ['a', 'b', 'c', 'd', 'e', 'end:{"reason":"done"}'], 'replay, live, end: no gap, no duplicate')
  t.ok(counts.slice(2).every((count, i) => count >= i + 3), 'no live frame reached the reader before the store had it')
  t.equal(store.listens, 0, 'the reader never listened to the store')
  t.equal(await done, 'done')
  // Once the run ended (its owner gone), a reader replays it from the store alone.
  const { events: later } = await readRun(t, app, 'near')
  t.same(texts(later), texts(events))
})

t.test('with a remote store, readers on the owner\'s instance close when it loses the run, and so does one that comes after', async t => {
  const { logger, lines } = captureLogs('warn')
  const store = new RemoteMemoryRunStore()
  const app = await build(t, { heartbeat: false, runs: { store, lease: 150 } }, { logger })
  runRoutes(app, () => [])
  const source = pushable()
  const { done } = await app.eventRuns.start('lose', source)
  source.push('a')
  const first = await injectEventStream(app, '/runs/lose')
  const events: ParsedEvent[] = []
  const reading = (async () => { for await (const event of first) events.push(event) })()
  await until(() => events.length === 1, 'the replay')
  // The next write hangs; meanwhile the renewal finds the run is no longer this owner's.
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  const append = store.append.bind(store)
  store.append = async (...args) => { await held; return await append(...args) }
  ;(store as RunStore).renew = async runs => runs.map(() => 'lost')
  source.push('b')
  await reading
  t.same(texts(events), ['a'], 'closed without a frame the store may not have, and without an end: its client resumes')
  t.equal(app.eventRuns.stats().running, 1, 'the owner waits for its write')
  const late = await injectEventStream(app, '/runs/lose')
  const lateEvents: ParsedEvent[] = []
  for await (const event of late) lateEvents.push(event)
  t.same(lateEvents, [], 'a reader that came after the loss is closed at once')
  t.equal(store.listens, 0)
  release()
  t.equal(await done, 'lost')
  t.ok(lines.some(line => line.msg.startsWith('run store cannot deliver the run without a gap') && String((line.err as { message?: string } | undefined)?.message).includes('no longer this instance')))
})
