// The Redis store's live path on the shared Redis: a busy event loop loses nothing, topics listened at once keep
// position order, a gap on the live path fails the topic instead of skipping, listeners come and go in one tick.
import { execFileSync } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { Redis } from 'ioredis'
import t from 'tap'
import { CHANNELS, type StoredEvent } from '../../index.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { SHARED_REDIS, sharedClient, sharedStore, uniquePrefix, until } from './helpers.js'

/** Appends `count` events to a topic from another process, while this one's event loop is blocked waiting for it. */
function appendFromAnotherProcess (prefix: string, topic: string, count: number): void {
  const script = `
    import { RedisStore } from './dist/lib/stores/redis.js'
    const store = new RedisStore({ connection: ${JSON.stringify(SHARED_REDIS)}, prefix: ${JSON.stringify(prefix)} })
    const started = Date.now()
    await Promise.all(Array.from({ length: ${count} }, (_, i) => store.append(${JSON.stringify(topic)}, { data: String(i) })))
    // The issue's case: the loop stays busy for 1.5 s in all.
    while (Date.now() - started < 1500) await new Promise(resolve => setTimeout(resolve, 10))
    await store.close()
  `
  execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' })
}

t.test('an event loop busy for 1.5 s while another process appends 3,000 events (history 1,000): every event arrives, in order', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  const heard: StoredEvent[] = []
  let failures = 0
  await store.listen('a', event => heard.push(event), () => failures++)
  appendFromAnotherProcess(prefix, 'a', 3000)
  await until(() => heard.length >= 3000, `3000 events (have ${heard.length})`)
  t.same(heard.map(event => event.data).sort((x, y) => Number(x) - Number(y)), Array.from({ length: 3000 }, (_, i) => String(i)), 'every event once')
  t.ok(heard.every((event, i) => i === 0 || event.seq > heard[i - 1].seq), 'in position order')
  t.equal(failures, 0, 'no failure: nothing was missed')
  t.equal(store.stats().delivered, 3000)
})

t.test('16 topics listened at once on a new store, published to meanwhile: one listener of all gets position order (40 runs)', async t => {
  const prefix = uniquePrefix(t)
  const publisher = sharedStore(t, { prefix })
  const topics = Array.from({ length: 16 }, (_, i) => `t${i}`)
  for (let run = 0; run < 40; run++) {
    const store = new RedisStore({ connection: SHARED_REDIS, prefix })
    const heard: number[] = []
    const publishing: Array<Promise<StoredEvent>> = []
    const listening = topics.map(topic => store.listen(topic, event => heard.push(event.seq)))
    // Some published while the listens are under way, the rest once they resolved.
    for (let i = 0; i < 16; i++) publishing.push(publisher.append(topics[i], { data: String(i) }))
    await Promise.all(listening)
    const after = (await publisher.readAfter(topics, undefined)).head
    for (let i = 0; i < 64; i++) publishing.push(publisher.append(topics[(i * 7) % 16], { data: `late ${i}` }))
    const appended = await Promise.all(publishing)
    const expected = appended.filter(event => event.seq > after).map(event => event.seq)
    await until(() => heard.filter(seq => seq > after).length >= expected.length, 'the events after the listens')
    await store.close()
    if (!heard.every((seq, i) => i === 0 || seq > heard[i - 1])) t.fail(`run ${run}: out of order: ${heard.join(' ')}`)
    if (heard.filter(seq => seq > after).join() !== expected.join()) t.fail(`run ${run}: missed events`)
  }
  t.pass('40 runs in order, none missed')
})

t.test('a message on the live path that links past the last delivered position fails the topic instead of skipping', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  const heard: string[] = []
  const failures: Error[] = []
  await store.listen('a', event => heard.push(event.data), err => failures.push(err))
  const first = await store.append('a', { data: 'one' })
  await until(() => heard.length === 1, 'the first event')
  // What a lost message would look like: the next one links to a position this instance never got.
  const epoch = (await sharedClient(t).hget(`${prefix}:meta`, 'first')) as string
  await sharedClient(t).publish(`${prefix}:c:a`, `${first.seq + 2}\n${first.seq + 1}\n${epoch}\n${Date.now()}\n\n\n\nthree`)
  await until(() => failures.length === 1, 'the failure')
  t.equal((failures[0] as Error & { code: string }).code, 'FST_SSE_STORE_GAP')
  t.same(heard, ['one'], 'nothing after the gap was delivered')
  t.equal(store.stats().gaps, 1)
  t.equal(store.stats().topics, 0, 'the failed topic is dropped')
  await until(async () => (await sharedClient(t).pubsub('NUMSUB', `${prefix}:c:a`) as [string, number])[1] === 0, 'its channel to be unsubscribed')
  t.pass('and unsubscribed')
})

t.test('a duplicate live message is dropped; a listener added to a listened topic resolves at once', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  const heard: string[] = []
  await store.listen('a', event => heard.push(event.data))
  const first = await store.append('a', { data: 'one', event: 'note', id: 'mine' })
  await until(() => heard.length === 1, 'the first event')
  const epoch = (await sharedClient(t).hget(`${prefix}:meta`, 'first')) as string
  await sharedClient(t).publish(`${prefix}:c:a`, `${first.seq}\n0\n${epoch}\n${Date.now()}\nnote\nmine\n\none`)
  const also: StoredEvent[] = []
  await store.listen('a', event => also.push(event))
  await store.append('a', { data: 'two' })
  await until(() => heard.length === 2 && also.length === 1, 'the second event')
  t.same(heard, ['one', 'two'], 'the copy of one was dropped')
  t.same(also[0].data, 'two')
})

t.test('a topic left and listened again in one tick, or left while its SUBSCRIBE is out, ends subscribed exactly when listened', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  const publisher = sharedStore(t, { prefix })
  const redis = sharedClient(t)
  const subscribed = async (topic: string): Promise<number> => (await redis.pubsub('NUMSUB', `${prefix}:c:${topic}`) as [string, number])[1]
  const stop = await store.listen('a', () => {})
  await stop()
  const heard: string[] = []
  const again = store.listen('a', event => heard.push(event.data))
  await again
  await new Promise(resolve => setImmediate(resolve))
  await publisher.append('a', { data: 'still here' })
  await until(() => heard.length === 1, 'the event after listening again')
  t.equal(await subscribed('a'), 1)
  // Listened and left before the SUBSCRIBE returned: the channel is left afterwards.
  const pending = store.listen('b', () => {})
  const stopB = await pending
  await stopB()
  await until(async () => await subscribed('b') === 0, 'b to be unsubscribed')
  t.equal(store.stats().topics, 1)
})

t.test('stats: the reader\'s lag and counters start at zero and count deliveries', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  t.same(store.stats(), { topics: 0, waiting: 0, delivered: 0, lagMs: 0, reconnections: 0, caughtUp: 0, gaps: 0 })
  await store.listen('a', () => {})
  await store.append('a', { data: 'x', id: 'own-id' })
  await until(() => store.stats().delivered === 1, 'the delivery')
  const stats = store.stats()
  t.ok(stats.lagMs >= 0 && stats.lagMs < 1000, `lag ${stats.lagMs} ms`)
  t.equal(stats.topics, 1)
})

t.test('a listen that gets no answer in time rejects with FST_SSE_STORE_UNAVAILABLE and leaves nothing behind', async t => {
  const prefix = uniquePrefix(t)
  // Nothing listens on port 1: neither connection ever becomes ready.
  const store = new RedisStore({ connection: { host: '127.0.0.1', port: 1, retryStrategy: () => 50 }, prefix, timeout: 200 })
  t.teardown(() => store.close())
  await t.rejects(store.listen('a', () => {}), { code: 'FST_SSE_STORE_UNAVAILABLE' })
  await new Promise(resolve => setImmediate(resolve))
  t.equal(store.stats().topics, 0)
})

t.test('listening to many topics at once raises no MaxListenersExceededWarning', async t => {
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const store = sharedStore(t)
  await Promise.all(Array.from({ length: 32 }, (_, i) => store.listen(`t${i}`, () => {})))
  await Promise.all(Array.from({ length: 15 }, (_, i) => store.append(`t${i}`, { data: 'x' })))
  await new Promise(resolve => setTimeout(resolve, 50))
  t.same(warnings.map(warning => warning.name), [])
})

t.test('a closed store rejects listen() with FST_SSE_HUB_CLOSED, and a listen pending at close rejects too', async t => {
  const store = new RedisStore({ connection: SHARED_REDIS, prefix: uniquePrefix(t) })
  await store.listen('first', () => {})
  // Its SUBSCRIBE is on the wire when the store closes.
  const pending = store.listen('a', () => {})
  await store.close()
  await t.rejects(pending, { code: 'FST_SSE_HUB_CLOSED' })
  await t.rejects(store.listen('b', () => {}), { code: 'FST_SSE_HUB_CLOSED' })
  const redis = new Redis(SHARED_REDIS)
  t.teardown(() => redis.disconnect())
})

t.test('each event the live path delivers is published on the store lag channel, with its lag in ms', async t => {
  const lags: number[] = []
  const listener = (message: unknown): void => { lags.push((message as { lag: number }).lag) }
  diagnostics.subscribe(CHANNELS.storeLag, listener)
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.storeLag, listener))
  const store = new RedisStore({ connection: SHARED_REDIS, prefix: uniquePrefix(t) })
  t.teardown(() => store.close())
  const received: StoredEvent[] = []
  await store.listen('lagged', event => { received.push(event) })
  for (let i = 0; i < 3; i++) await store.append('lagged', { data: `e${i}` })
  await until(() => received.length === 3, 'three live deliveries')
  t.equal(lags.length, 3, 'one message per delivered event')
  t.ok(lags.every(lag => Number.isFinite(lag) && lag >= -50 && lag < 5000), `lags ${lags.join(', ')} ms (Redis's clock against ours)`)
  t.equal(store.stats().lagMs, lags[2], "the store's stats say the newest lag")
})
