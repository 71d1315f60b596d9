// RedisStore against the shared Redis (127.0.0.1:6379): positions, replay, bounds, key expiry, the one reader.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { StoredEvent } from '../../index.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { APPEND } from '../../lib/stores/redis-scripts.js'
import { SHARED_REDIS, sharedClient, sharedStore, uniquePrefix, until } from './helpers.js'

const datas = (events: StoredEvent[] | null): string[] | null => events === null ? null : events.map(event => event.data)

t.test('positions increase strictly across topics and across stores on one prefix; ids, events and data round-trip', async t => {
  const prefix = uniquePrefix(t)
  const a = sharedStore(t, { prefix })
  const b = sharedStore(t, { prefix })
  const appended: StoredEvent[] = []
  for (let i = 0; i < 20; i++) appended.push(await (i % 2 === 0 ? a : b).append(i % 3 === 0 ? 'x' : 'y', { data: `d${i}` }))
  const seqs = appended.map(event => event.seq)
  t.ok(seqs.every((seq, i) => i === 0 || seq === seqs[i - 1] + 1), 'one counter: each append takes the next position')
  t.ok(appended.every(event => event.id === String(event.seq)), 'the id is the position')
  const named = await a.append('x', { data: 'line 1\nline 2', event: 'note', id: 'mine-1' })
  t.same(named, { topic: 'x', seq: seqs[19] + 1, id: 'mine-1', event: 'note', data: 'line 1\nline 2' })
  const replay = await b.readAfter(['x', 'y'], String(seqs[17]))
  t.same(replay.events, [
    { topic: 'x', seq: seqs[18], id: String(seqs[18]), data: 'd18' },
    { topic: 'y', seq: seqs[19], id: String(seqs[19]), data: 'd19' },
    named
  ], 'merged in position order, fields as appended')
  t.equal(replay.head, named.seq)
  t.same(await b.readAfter(['x'], 'mine-1'), { events: [], head: named.seq }, 'a publisher id places a client too')
})

t.test('publisher ids: a decimal integer or an id already kept is rejected, and no position is used', async t => {
  const store = sharedStore(t)
  await store.append('a', { data: 'x', id: 'dup' })
  const { head } = await store.readAfter(['a'], undefined)
  await t.rejects(store.append('a', { data: 'y', id: '42' }), { code: 'FST_SSE_INVALID_ID', message: /decimal integer/ })
  await t.rejects(store.append('b', { data: 'y', id: 'dup' }), { code: 'FST_SSE_INVALID_ID', message: /already in the history/ })
  t.equal((await store.readAfter(['a'], undefined)).head, head)
})

t.test('readAfter: null for an id it cannot place, never a partial replay', async t => {
  const store = sharedStore(t)
  const first = await store.append('a', { data: 'x' })
  for (const id of [String(first.seq + 5), 'no-such-id', '0', String(first.seq - 2)]) {
    t.same(await store.readAfter(['a'], id), { events: null, head: first.seq }, id)
  }
  t.same(datas((await store.readAfter(['a'], String(first.seq - 1))).events), ['x'], 'the position before the epoch\'s first event')
})

t.test('a replay longer than a page is read in pages, in order, across topics', async t => {
  const store = sharedStore(t, { historySize: 2000 })
  const start = (await store.readAfter(['a'], undefined)).head
  const expected: string[] = []
  for (let i = 0; i < 1300; i++) {
    await store.append(i % 5 === 0 ? 'b' : 'a', { data: String(i) })
    expected.push(String(i))
  }
  const replay = await store.readAfter(['a', 'b'], String(start))
  t.same(datas(replay.events), expected)
})

t.test('history is bounded by count per topic: replay from an evicted position resyncs', async t => {
  const store = sharedStore(t, { historySize: 3 })
  const events: StoredEvent[] = []
  for (let i = 0; i < 6; i++) events.push(await store.append('a', { data: String(i) }))
  const other = await store.append('b', { data: 'b' })
  t.same(datas((await store.readAfter(['a'], events[2].id)).events), ['3', '4', '5'], 'the last three kept')
  t.same((await store.readAfter(['a'], events[1].id)).events, null, 'a position whose successor was evicted')
  t.same(datas((await store.readAfter(['b'], events[1].id)).events), ['b'], 'topic b lost nothing after it')
  t.same((await store.readAfter(['a', 'b'], events[1].id)).events, null, 'any topic with a gap resyncs the whole')
  t.same((await store.readAfter(['a', 'b'], other.id)).events, [])
})

t.test('history is bounded by age', async t => {
  const store = sharedStore(t, { historyAge: 100 })
  const before = (await store.readAfter(['a'], undefined)).head
  await store.append('a', { data: 'old', id: 'old' })
  await sleep(150)
  t.same((await store.readAfter(['a'], String(before))).events, null, 'the expired event left a gap')
  t.same((await store.readAfter(['a'], 'old')).events, null, 'an expired publisher id is unknown')
  const fresh = await store.append('a', { data: 'fresh' })
  t.same(datas((await store.readAfter(['a'], String(fresh.seq - 1))).events), ['fresh'])
})

t.test('keys of unused topics expire; an id from before a topic expired still resyncs, a later one does not', async t => {
  const prefix = uniquePrefix(t)
  const redis = sharedClient(t)
  const store = sharedStore(t, { prefix, historyAge: 100, keyTtl: 400 })
  const start = (await store.readAfter(['quiet'], undefined)).head
  await store.append('quiet', { data: 'q' })
  const topicKey = `${prefix}:t:quiet`
  const ttl = await redis.pttl(topicKey)
  // keyTtl, and at most one clock step (keyTtl / 1024) more: a busy topic renews its TTL once a step.
  t.ok(ttl > 0 && ttl <= 401, `the topic's key has a TTL (${ttl} ms)`)
  for (const key of await redis.keys(`${prefix}:*`)) t.ok(await redis.pttl(key) > 0, `${key} expires`)
  await until(async () => await redis.exists(topicKey) === 0, 'the topic key to expire', 2000)
  // Another topic keeps the store alive; its clock says what came after the quiet topic's key went.
  const busy = await store.append('busy', { data: 'b' })
  t.same((await store.readAfter(['quiet', 'busy'], String(start))).events, null, 'an id from before the expiry resyncs')
  t.same(datas((await store.readAfter(['quiet', 'busy'], String(busy.seq - 1))).events), ['b'], 'a later id resumes')
  await store.append('quiet', { data: 'again' })
  t.same((await store.readAfter(['quiet'], String(start))).events, null, 'a key made again still knows what it lost')
  await sleep(450)
  t.same(await redis.keys(`${prefix}:*`), [], 'with no publish for keyTtl, nothing of the store is left in Redis')
})

t.test('a topic nobody published to for a while but that was never lost resumes without a resync', async t => {
  const store = sharedStore(t)
  const { head } = await store.readAfter(['never', 'busy'], undefined)
  await store.append('busy', { data: 'b' })
  t.same(datas((await store.readAfter(['never', 'busy'], String(head))).events), ['b'])
})

t.test('one live connection per instance, one channel per topic whatever the listeners; events in position order', async t => {
  const prefix = uniquePrefix(t)
  const name = `sse-${prefix.slice(1, -1)}`
  const store = new RedisStore({ connection: { host: '127.0.0.1', port: 6379, connectionName: name }, prefix })
  t.teardown(() => store.close())
  const publisher = sharedStore(t, { prefix })
  const heard: Record<string, StoredEvent[]> = {}
  const stops = []
  for (const topic of ['a', 'b', 'c', 'd', 'e']) {
    for (let i = 0; i < 3; i++) stops.push(await store.listen(topic, event => (heard[`${topic}${i}`] ??= []).push(event)))
  }
  const redis = sharedClient(t)
  const clients = async (): Promise<string[]> => (await redis.client('LIST') as string).split('\n').filter(line => line.includes(`name=${name}`))
  t.equal((await clients()).length, 2, 'two connections: commands and the one subscriber')
  t.equal((await clients()).filter(line => line.includes(' sub=5 ')).length, 1, 'one subscriber on five channels for 15 listeners')
  t.same((await redis.pubsub('CHANNELS', `${prefix}:c:*`) as string[]).sort(), ['a', 'b', 'c', 'd', 'e'].map(topic => `${prefix}:c:${topic}`))
  const appended: StoredEvent[] = []
  for (let i = 0; i < 50; i++) appended.push(await publisher.append('abcde'[i % 5], { data: String(i) }))
  await until(() => Object.values(heard).reduce((sum, events) => sum + events.length, 0) === 150, 'every listener to hear its events')
  for (const [listener, events] of Object.entries(heard)) {
    t.same(events, appended.filter(event => event.topic === listener[0]), `${listener}: its topic's events, in order`)
  }
  for (const stop of stops) await stop()
  await until(async () => (await redis.pubsub('CHANNELS', `${prefix}:c:*`) as string[]).length === 0, 'the channels to be unsubscribed')
  t.equal(store.stats().topics, 0, 'and forgotten')
})

t.test('a topic added while the reader blocks gets its events at once, not after the block times out', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix })
  const publisher = sharedStore(t, { prefix })
  await store.listen('first', () => {})
  await sleep(100) // the reader is blocked on "first" now
  const heard: string[] = []
  await store.listen('second', event => heard.push(event.data))
  const sent = Date.now()
  await publisher.append('second', { data: 'hello' })
  await until(() => heard.length === 1, 'the event', 2000)
  t.ok(Date.now() - sent < 1000, `delivered in ${Date.now() - sent} ms, with the reader's block at 5000 ms`)
})

t.test('a listener on several topics gets 1,500 appends of one transaction in position order across them', async t => {
  const prefix = uniquePrefix(t)
  const store = sharedStore(t, { prefix, historySize: 5000 })
  const heard: number[] = []
  await store.listen('a', event => heard.push(event.seq))
  await store.listen('b', event => heard.push(event.seq))
  // 1500 appends in one transaction: more than a page of topic a, with topic b's entries after it.
  const redis = sharedClient(t)
  const transaction = redis.multi()
  for (let i = 0; i < 1500; i++) {
    const topic = i < 1000 || i % 2 === 0 ? 'a' : 'b'
    transaction.eval(APPEND, 6, `${prefix}:meta`, `${prefix}:clock`, `${prefix}:t:${topic}`, `${prefix}:l:${topic}`, `${prefix}:id:`, `${prefix}:c:${topic}`,
      0, 5000, 300_000, 86_400_000, 1000, String(i), '', '', '')
  }
  const results = await transaction.exec() as Array<[Error | null, [string, string]]>
  const appended = results.map(([, [, seq]]) => Number(seq))
  await until(() => heard.length === 1500, 'all 1500 events')
  t.same(heard, appended, 'every event once, in position order')
})

t.test('a client handed in is used and left open; the store closes only its own reader', async t => {
  const client = sharedClient(t)
  const store = new RedisStore({ client, prefix: uniquePrefix(t) })
  await store.listen('a', () => {})
  await store.append('a', { data: 'x' })
  await store.close()
  t.equal(client.status, 'ready', 'the app\'s client stays open')
  t.equal(await client.ping(), 'PONG')
  await t.rejects(store.append('a', { data: 'y' }), { code: 'FST_SSE_HUB_CLOSED' })
  await t.rejects(store.listen('b', () => {}), { code: 'FST_SSE_HUB_CLOSED' })
  await store.close()
})

t.test('options: exactly one of client and connection; a prefix gets a hash tag; bounds are checked', async t => {
  const prefix = uniquePrefix(t)
  const bare = prefix.slice(1, -1)
  // What TypeScript rejects, for JavaScript callers.
  t.throws(() => new RedisStore({} as never), { code: 'FST_SSE_INVALID_OPTION' })
  t.throws(() => new RedisStore({ client: sharedClient(t), connection: SHARED_REDIS } as never), { code: 'FST_SSE_INVALID_OPTION' })
  for (const options of [{ prefix: '' }, { historySize: 0 }, { historyAge: 1.5 }, { keyTtl: 10, historyAge: 20 }, { timeout: -1 }]) {
    t.throws(() => new RedisStore({ client: sharedClient(t), ...options } as never), { code: 'FST_SSE_INVALID_OPTION' }, JSON.stringify(options))
  }
  const store = new RedisStore({ connection: SHARED_REDIS, prefix: bare })
  t.teardown(() => store.close())
  await store.append('topic', { data: 'x', id: 'pub' })
  const redis = sharedClient(t)
  const keys = (await redis.keys(`${prefix}:*`)).sort()
  t.same(keys, [`${prefix}:clock`, `${prefix}:id:pub`, `${prefix}:l:topic`, `${prefix}:meta`, `${prefix}:t:topic`], 'every key under the one hash tag')
})

t.test('a replay read while the history is trimmed under it resyncs instead of leaving a gap', async t => {
  const prefix = uniquePrefix(t)
  const client = sharedClient(t)
  const store = new RedisStore({ client, prefix, historySize: 600 })
  t.teardown(() => store.close())
  const other = sharedStore(t, { prefix, historySize: 600 })
  const { head: start } = await store.readAfter(['a'], undefined)
  for (let i = 0; i < 600; i++) await other.append('a', { data: String(i) })
  // The first page (512) comes with the script; before the second, another instance publishes enough to evict it.
  const xrange = client.xrange.bind(client)
  client.xrange = (async (...args: Parameters<typeof xrange>) => {
    for (let i = 0; i < 700; i++) await other.append('a', { data: `late ${i}` })
    await client.xtrim(`${prefix}:t:a`, 'MAXLEN', 600)
    return await xrange(...args)
  }) as typeof client.xrange
  const replay = await store.readAfter(['a'], String(start))
  t.equal(replay.events, null)
  t.ok(replay.head >= start + 600, 'with the head of the read')
})

t.test('Redis errors reach the caller: a failed script, a client the app closed', async t => {
  const prefix = uniquePrefix(t)
  const client = sharedClient(t)
  const store = new RedisStore({ client, prefix })
  t.teardown(() => store.close())
  await client.set(`${prefix}:meta`, 'not a hash')
  await t.rejects(store.append('a', { data: 'x' }), /WRONGTYPE/)
  await client.del(`${prefix}:meta`)
  t.match((await store.append('a', { data: 'x' })).id, /^\d+$/, 'and works again once the key is right')
  await client.quit()
  await t.rejects(store.append('a', { data: 'y' }), { code: 'FST_SSE_STORE_UNAVAILABLE', message: /closed/ })
})
