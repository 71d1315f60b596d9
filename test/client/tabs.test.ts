// Clients that share one connection (the `share` option) in Node: BroadcastChannel is Node's own; Web Locks are
// Node's own where it has them (22.?+), else the stand-in below, which grants one exclusive lock per name in request
// order, as the spec's lock manager does. The browser test (test/browser/client.browser.ts) runs real tabs.
import t, { type Test } from 'tap'
import { connect, type EventClient } from '../../lib/client/index.js'
import { build, listen, until } from '../helpers.js'

type News = { news: { n: number } }

interface Waiter { callback: () => Promise<void>, resolve: (value: unknown) => void, reject: (err: unknown) => void, started: boolean }

/** An exclusive lock per name, granted in request order; a waiter whose signal aborts leaves the queue. */
class Locks {
  readonly #queues = new Map<string, Waiter[]>()

  async request (name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown> {
    return await new Promise((resolve, reject) => {
      const queue = this.#queues.get(name) ?? []
      this.#queues.set(name, queue)
      const waiter: Waiter = { callback, resolve, reject, started: false }
      queue.push(waiter)
      options.signal?.addEventListener('abort', () => {
        if (waiter.started) return
        queue.splice(queue.indexOf(waiter), 1)
        reject(new DOMException('aborted', 'AbortError'))
      })
      if (queue.length === 1) this.#grant(queue)
    })
  }

  #grant (queue: Waiter[]): void {
    const waiter = queue[0]
    if (waiter === undefined) return
    waiter.started = true
    waiter.callback().then(waiter.resolve, waiter.reject).finally(() => {
      queue.shift()
      this.#grant(queue)
    })
  }
}

function withLocks (t: Test): void {
  const globals = globalThis as unknown as { navigator?: { locks?: unknown } }
  if (globals.navigator?.locks !== undefined) return
  const navigator = globals.navigator
  Object.defineProperty(globalThis, 'navigator', { value: { ...navigator, locks: new Locks() }, configurable: true, writable: true })
  t.teardown(() => Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true }))
}

t.test('tabs share one connection; when the leader closes, the next resumes from the last id with no gap', async t => {
  withLocks(t)
  const app = await build(t, { retry: 10 }, { forceCloseConnections: true })
  const requests: Array<string | undefined> = []
  app.get('/events', async (request, reply) => {
    requests.push(request.headers['last-event-id'] as string | undefined)
    await app.eventHub.subscribe(reply.sse(), ['news'])
  })
  const url = await listen(app) + '/events'
  const tabs: Array<EventClient<News>> = []
  const received: number[][] = []
  for (let i = 0; i < 4; i++) {
    const client = connect<News>(url, { share: true })
    t.teardown(client.close)
    const numbers: number[] = []
    client.on('news', data => numbers.push(data.n))
    tabs.push(client)
    received.push(numbers)
  }
  await until(() => app.openEventStreams === 1 && tabs.every(tab => tab.state === 'open'), 'every tab open on one stream')
  t.same(tabs.map(tab => tab.leader), [true, false, false, false], 'the first tab leads')
  let n = 0
  const publishing = setInterval(() => { app.eventHub.send('news', 'news', { n: ++n }).catch(t.threw) }, 5)
  t.teardown(() => clearInterval(publishing))
  for (const leader of [0, 1, 2]) {
    await until(() => received[3].length >= 10 * (leader + 1), 'events through the leader')
    tabs[leader].close()
    t.equal(tabs[leader].state, 'closed')
    await until(() => tabs[leader + 1].leader && tabs[leader + 1].state === 'open', `tab ${leader + 1} takes over`)
  }
  await until(() => received[3].length >= 40, 'events from the last leader')
  clearInterval(publishing)
  t.equal(app.openEventStreams, 1, 'one connection for the tabs left')
  t.same(requests.length, 4, 'one request per leader')
  t.equal(requests[0], undefined)
  t.ok(requests.slice(1).every(id => id !== undefined), 'each new leader resumes from an id')
  const last = received[3]
  t.same(last, Array.from({ length: last.length }, (_, i) => i + 1), `the last tab got every event once, in order (${last.length})`)
  for (const [i, numbers] of received.slice(0, 3).entries()) {
    t.same(numbers, Array.from({ length: numbers.length }, (_, j) => j + 1), `tab ${i}: no gap while it was open`)
  }
  t.not(tabs[3].lastEventId, '', 'a follower keeps the last id, to lead from it')
})

t.test('a new tab learns the state; a stop for good (204, 401) closes every tab', async t => {
  withLocks(t)
  const app = await build(t, {}, { forceCloseConnections: true })
  let answer = 200
  let follow = (): void => {}
  const followed = new Promise<void>(resolve => { follow = resolve })
  app.get('/events', async (_request, reply) => {
    if (answer !== 200) return reply.code(answer).send()
    const stream = reply.sse()
    await stream.message('hello', { id: 'h' })
    await followed
    // More than a follower keeps ids of, one without an id.
    await stream.message('no id')
    for (let i = 0; i < 300; i++) await stream.message(String(i), { id: `e${i}` })
  })
  const url = await listen(app) + '/events'
  const first = connect(url, { share: true, key: 'shared' })
  t.teardown(first.close)
  await until(() => first.state === 'open' && first.lastEventId === 'h', 'the leader open')
  const second = connect(url, { share: true, key: 'shared' })
  t.teardown(second.close)
  const messages: string[] = []
  second.on('message', data => messages.push(data))
  await until(() => second.state === 'open', 'the follower learns the state from a hello')
  t.equal(second.leader, false)
  follow()
  await until(() => messages.length === 301, 'the events through the leader')
  t.equal(messages[0], 'no id')
  t.equal(second.lastEventId, 'e299')
  answer = 401
  first.close()
  await until(() => second.leader && second.state === 'closed', 'the follower leads, meets the 401 and stops')
  t.equal(second.error?.code, 'FST_SSE_CLIENT_HTTP_STATUS')
  t.equal(second.error?.status, 401)

  const third = connect(url, { share: true, key: 'other' })
  const fourth = connect(url, { share: true, key: 'other' })
  t.teardown(fourth.close)
  await until(() => third.state === 'closed' && fourth.state === 'closed', 'both tabs closed by the leader\'s stop')
  t.equal(fourth.error?.status, 401, 'the follower got the leader\'s error')
  t.equal(fourth.error?.retryable, false)
})

t.test('without Web Locks, share connects on its own', async t => {
  const globals = globalThis as unknown as { navigator?: unknown }
  const navigator = globals.navigator
  Object.defineProperty(globalThis, 'navigator', { value: undefined, configurable: true, writable: true })
  t.teardown(() => Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true }))
  const app = await build(t, {}, { forceCloseConnections: true })
  app.get('/events', async (_request, reply) => { await reply.sse().message('alone') })
  const url = await listen(app) + '/events'
  const clients = [connect(url, { share: true }), connect(url, { share: true })]
  for (const client of clients) t.teardown(client.close)
  await until(() => app.openEventStreams === 2, 'two connections')
  t.ok(clients.every(client => client.leader))
})

t.test('a follower: drops the events a new leader repeats, mirrors the leader\'s state, closes on its stop', async t => {
  withLocks(t)
  const key = 'follower-test'
  // The test holds the lock: the client stays a follower, and the test speaks for the leader.
  let release = (): void => {}
  const navigator = globalThis.navigator as unknown as { locks: { request: (name: string, options: object, callback: () => Promise<void>) => Promise<unknown> } }
  const held = new Promise<void>(resolve => { release = resolve })
  const granted = new Promise<void>(resolve => { navigator.locks.request(key, {}, async () => { resolve(); await held }).catch(t.threw) })
  t.teardown(release)
  await granted
  const leader = new BroadcastChannel(key)
  t.teardown(() => leader.close())
  const hellos: unknown[] = []
  leader.onmessage = ({ data }) => hellos.push(data)
  const client = connect('http://127.0.0.1:9/never', { share: true, key })
  t.teardown(client.close)
  const got: string[] = []
  const states: Array<[string, string | undefined]> = []
  client.on('message', data => got.push(data))
  client.onState((state, error) => states.push([state, error?.code]))
  await until(() => hellos.length === 1, 'the hello')
  t.same(hellos, [{ t: 'hello' }])
  const event = (id: string | undefined, data: string): object => ({ t: 'event', event: { type: 'message', data, lastEventId: id ?? 'x', ...(id === undefined ? {} : { id }) } })
  for (const message of [event('1', 'a'), event('2', 'b'), event('2', 'b again'), event(undefined, 'no id'), event('3', 'c'), { t: 'id', id: '4' }]) leader.postMessage(message)
  leader.postMessage({ t: 'state', state: 'connecting', error: { code: 'FST_SSE_CLIENT_NETWORK', message: 'broke', status: undefined, retryable: true } })
  leader.postMessage({ t: 'state', state: 'open' })
  await until(() => states.length === 2, 'two states')
  t.same(got, ['a', 'b', 'no id', 'c'], 'the repeated event 2 is dropped')
  t.equal(client.lastEventId, '4', 'an id frame without an event moves the id too')
  t.same(states, [['connecting', 'FST_SSE_CLIENT_NETWORK'], ['open', undefined]])
  t.equal(client.leader, false)
  leader.postMessage({ t: 'state', state: 'closed', error: { code: 'FST_SSE_CLIENT_HTTP_STATUS', message: 'gone', status: 410, retryable: false } })
  await until(() => client.state === 'closed', 'closed by the leader\'s stop')
  t.equal(client.error?.status, 410)
  t.ok(client.error instanceof Error)
})
