import t from 'tap'
import { FST_SSE_RUNS_CLOSED, MemoryRunStore, type RunClaim } from '../../index.js'

const claim = (id: string, replace = false): RunClaim => ({ id, protocol: 'events', interrupted: { before: '', after: '' }, lease: 1000, ttl: 1000, replace })
const frame = (text: string): Buffer => Buffer.from(`data: ${text}\n\n`)

t.test('writes of an owner that does not hold the run are refused as lost', async t => {
  const store = new MemoryRunStore()
  t.teardown(() => store.close())
  t.equal(await store.append('none', 'r1', 1, [frame('a')], undefined, 1000, 1000), 'lost', 'no run')
  await store.claim('k', claim('r1'))
  t.equal(await store.append('k', 'r2', 1, [frame('a')], undefined, 1000, 1000), 'lost', 'another run')
  t.equal(await store.append('k', 'r1', 2, [frame('a')], undefined, 1000, 1000), 'lost', 'not the next index')
  t.equal(await store.append('k', 'r1', 1, [frame('a')], 'done', 1000, 1000), 'ok')
  t.equal(await store.append('k', 'r1', 2, [frame('b')], undefined, 1000, 1000), 'lost', 'ended')
  t.same(await store.renew([{ key: 'k', id: 'r1' }, { key: 'none', id: 'r1' }, { key: 'k', id: 'r2' }]), ['lost', 'lost', 'lost'])
  t.equal(await store.read('k', 'r2', 0, 10), null, 'another run is not read')
  t.same(await store.read('k', 'r1', 0, 10), { frames: [frame('a')], state: 'done', ended: true })
  t.same(await store.read('k', 'r1', 0, 0), { frames: [], state: 'done', ended: false }, 'a page short of the end')
})

t.test('an interrupted run gives its key up at once; a closed store refuses everything', async t => {
  const store = new MemoryRunStore()
  await store.claim('k', claim('r1'))
  await store.append('k', 'r1', 1, [frame('end')], 'interrupted', 1000, 1000)
  t.equal((await store.claim('k', claim('r2'))).claimed, true)
  await store.close()
  await t.rejects(store.get('k'), FST_SSE_RUNS_CLOSED)
  await t.rejects(store.claim('k', claim('r3')), FST_SSE_RUNS_CLOSED)
})
