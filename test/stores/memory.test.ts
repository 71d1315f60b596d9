import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemoryStore, type StoredEvent } from '../../index.js'
import { isPositionId } from '../../lib/stores/store.js'

const ids = (events: readonly StoredEvent[] | null): string[] | null => events === null ? null : events.map(event => event.id)

t.test('positions increase strictly across topics, are the ids unless the publisher gave one, and reach listeners in order', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const heard: string[] = []
  const stop = await store.listen('a', event => heard.push(`${event.topic}:${event.id}:${event.data}`))
  const first = await store.append('a', { data: 'one' })
  const second = await store.append('b', { data: 'two', event: 'note' })
  const own = await store.append('a', { data: 'three', id: 'msg-3' })
  t.ok(first.seq < second.seq && second.seq < own.seq, 'strictly increasing')
  t.equal(second.seq, first.seq + 1)
  t.equal(first.id, String(first.seq))
  t.equal(second.event, 'note')
  t.notOk('event' in first, 'no event type field when none was given')
  t.equal(own.id, 'msg-3')
  t.same(heard, [`a:${first.id}:one`, 'a:msg-3:three'])
  await stop()
  await store.append('a', { data: 'four' })
  t.equal(heard.length, 2, 'a stopped listener hears nothing more')
  // Positions start at the clock in microseconds: ids of an earlier run are older than any this store assigns.
  t.ok(first.seq >= (Date.now() - 1000) * 1000 && first.seq <= Date.now() * 1000)
})

t.test('readAfter: later events of the asked topics, merged in position order, with the head', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const a1 = await store.append('a', { data: '1' })
  const b2 = await store.append('b', { data: '2' })
  const c3 = await store.append('c', { data: '3' })
  const a4 = await store.append('a', { data: '4', id: 'four' })
  const b5 = await store.append('b', { data: '5' })
  const all = await store.readAfter(['b', 'a'], a1.id)
  t.same(ids(all.events), [b2.id, 'four', b5.id], 'ordered by position whatever the order of the topics')
  t.equal(all.head, b5.seq)
  t.same(ids((await store.readAfter(['a', 'b'], 'four')).events), [b5.id], 'a publisher id is a position too')
  t.same(ids((await store.readAfter(['a'], b5.id)).events), [], 'nothing after the head')
  t.same(ids((await store.readAfter(['never-used'], c3.id)).events), [], 'a topic with no history has nothing to replay')
  t.same(await store.readAfter(['a'], undefined), { events: [], head: b5.seq }, 'a new reader gets only the head')
  t.same(ids((await store.readAfter(['a'], String(a1.seq - 1))).events), [a1.id, a4.id], 'the position before the first event')
})

t.test('readAfter: an id the store cannot place gives null (resync), never a partial replay', async t => {
  const earlier = new MemoryStore()
  const old = await earlier.append('a', { data: 'from an earlier run' })
  await earlier.close()
  await sleep(2)
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const event = await store.append('a', { data: 'x' })
  for (const id of [old.id, String(event.seq + 1), 'no-such-id', '0', '007', `${event.id}.0`, '-1', '1e3']) {
    t.same(await store.readAfter(['a'], id), { events: null, head: event.seq }, `id ${JSON.stringify(id)}`)
  }
})

t.test('history is bounded by count per topic; replay from an evicted position resyncs', async t => {
  const store = new MemoryStore({ historySize: 3 })
  t.teardown(() => store.close())
  const a = []
  for (let i = 0; i < 5; i++) a.push(await store.append('a', { data: String(i), id: `a${i}` }))
  const b = await store.append('b', { data: 'b' })
  t.same(ids((await store.readAfter(['a'], 'a2')).events), ['a3', 'a4'])
  t.same(ids((await store.readAfter(['a'], String(a[1].seq))).events), ['a2', 'a3', 'a4'], 'the last three kept')
  t.same((await store.readAfter(['a'], 'a1')).events, null, 'an evicted publisher id is unknown')
  t.same((await store.readAfter(['a'], String(a[0].seq))).events, null, 'a position whose successor was evicted')
  t.same(ids((await store.readAfter(['b'], String(a[0].seq))).events), [b.id], 'topic b lost nothing after it')
  t.same((await store.readAfter(['a', 'b'], String(a[0].seq))).events, null, 'any topic with a gap resyncs the whole')
  await t.resolves(store.append('c', { data: 'x', id: 'a0' }), 'an evicted publisher id can be used again')
})

t.test('history is bounded by age; a forgotten topic still resyncs old positions', async t => {
  const store = new MemoryStore({ historyAge: 40 })
  t.teardown(() => store.close())
  const before = String((await store.readAfter(['a'], undefined)).head)
  const old = await store.append('a', { data: 'old', id: 'old' })
  // The sweep (every historyAge) drops the event, then topic a itself: no history, no listener.
  await sleep(120)
  t.same((await store.readAfter(['a'], before)).events, null, 'the expired event left a gap, remembered after its topic went')
  t.same((await store.readAfter(['a'], 'old')).events, null, 'an expired publisher id is unknown')
  const fresh = await store.append('a', { data: 'fresh' })
  t.same((await store.readAfter(['a'], String(old.seq))).events?.map(event => event.data), ['fresh'], 'no gap after the dropped event')
  t.same((await store.readAfter(['a'], fresh.id)).events, [])
  // What a forgotten topic held is not known any more: an old position resyncs on every topic (never a gap).
  t.same((await store.readAfter(['z'], before)).events, null)
})

t.test('ring compaction keeps the history exact over many evictions', async t => {
  const store = new MemoryStore({ historySize: 10 })
  t.teardown(() => store.close())
  let last: StoredEvent | undefined
  for (let i = 0; i < 5000; i++) last = await store.append('a', { data: String(i) })
  const replay = await store.readAfter(['a'], String((last as StoredEvent).seq - 10))
  t.same(replay.events?.map(event => event.data), ['4990', '4991', '4992', '4993', '4994', '4995', '4996', '4997', '4998', '4999'])
})

t.test('publisher ids: a decimal integer or an id already kept is rejected, and nothing is appended', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const heard: string[] = []
  await store.listen('a', event => heard.push(event.id))
  await store.append('a', { data: 'x', id: 'dup' })
  const head = (await store.readAfter(['a'], undefined)).head
  await t.rejects(store.append('a', { data: 'y', id: '42' }), { code: 'FST_SSE_INVALID_ID', message: /decimal integer/ })
  await t.rejects(store.append('b', { data: 'y', id: 'dup' }), { code: 'FST_SSE_INVALID_ID', message: /already in the history/ })
  t.equal((await store.readAfter(['a'], undefined)).head, head, 'no position was used')
  t.same(heard, ['dup'])
})

t.test('a closed store refuses appends and listeners; invalid options are coded errors', async t => {
  const store = new MemoryStore({ historyAge: 10 })
  await store.append('a', { data: 'x' })
  await store.close()
  await t.rejects(store.append('a', { data: 'x' }), { code: 'FST_SSE_HUB_CLOSED' })
  await t.rejects(store.listen('a', () => {}), { code: 'FST_SSE_HUB_CLOSED' })
  for (const options of [{ historySize: 0 }, { historySize: 1.5 }, { historyAge: -1 }, { historyAge: 2 ** 31 }, { historySize: '9' }]) {
    t.throws(() => new MemoryStore(options as never), { code: 'FST_SSE_INVALID_OPTION' }, JSON.stringify(options))
  }
})

t.test('isPositionId: canonical decimal integers only', async t => {
  for (const id of ['0', '7', '1764000000000000', '9007199254740991']) t.equal(isPositionId(id), true, id)
  for (const id of ['', '01', '-1', '+1', '1.0', '1e3', ' 1', '1 ', 'a1', '9007199254740992', '10000000000000000', '١']) {
    t.equal(isPositionId(id), false, JSON.stringify(id))
  }
})
