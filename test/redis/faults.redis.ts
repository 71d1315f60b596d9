// Faults, each against a redis-server of the test's own: connections dropped, Redis killed and restarted with and
// without its data, flushed, behind a failover, unreachable; and nothing left behind after app.close().
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { RedisStore, type RedisStoreSettings } from '../../lib/stores/redis.js'
import { captureLogs } from '../helpers.js'
import { hubServer, redisServer, sseClient, until, type RedisServer } from './helpers.js'

const PREFIX = '{faults}'

function store (t: Test, server: RedisServer, options: RedisStoreSettings = {}): RedisStore {
  const created = new RedisStore({ connection: { port: server.port, host: '127.0.0.1', retryStrategy: () => 50 }, prefix: PREFIX, ...options })
  t.teardown(() => created.close())
  return created
}

function admin (t: Test, server: RedisServer): Redis {
  const redis = new Redis(server.url, { retryStrategy: () => 50 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  return redis
}

const datas = (events: Array<{ data: string }>): string[] => events.map(event => event.data)

t.test('a dropped connection: the subscriber stays open and gets what was published after, in order', async t => {
  const server = await redisServer(t)
  const warnings: string[] = []
  const { url } = await hubServer(t, store(t, server, { log: { warn: (_details, message) => warnings.push(message) } }))
  const publisher = store(t, server)
  const client = await sseClient(t, `${url}/events?topics=a`)
  await until(() => client.lastEventId() !== '', 'the position frame')
  await publisher.append('a', { data: 'before' })
  await client.received(1)
  // Every connection but this one is cut: the app's commands, its live reader, and the publisher's.
  await admin(t, server).call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
  await admin(t, server).call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  for (const data of ['after 1', 'after 2', 'after 3']) await publisher.append('a', { data })
  await client.received(4)
  t.same(datas(client.events), ['before', 'after 1', 'after 2', 'after 3'])
  const ids = client.events.map(event => Number(event.lastEventId))
  t.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'ids increase')
  t.ok(warnings.some(message => message.includes('reader reconnected')), 'the reader\'s reconnection was logged')
})

t.test('the live connection killed while events are published: every subscriber gets every event once, in order, after it comes back', async t => {
  const server = await redisServer(t)
  // The reader waits 300 ms before reconnecting, so the events below are published while it is away.
  const appStore = new RedisStore({ connection: { port: server.port, host: '127.0.0.1', retryStrategy: () => 300 }, prefix: PREFIX })
  t.teardown(() => appStore.close())
  const { app, url } = await hubServer(t, appStore)
  const publisher = store(t, server)
  const clients = [await sseClient(t, `${url}/events?topics=a`), await sseClient(t, `${url}/events?topics=a,b`), await sseClient(t, `${url}/events?topics=b,c`)]
  await until(() => clients.every(client => client.lastEventId() !== ''), 'the position frames')
  const appended = [await publisher.append('a', { data: 'a0' })]
  await until(() => clients[1].events.length === 1, 'the first event')
  await admin(t, server).call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  for (let i = 1; i < 40; i++) appended.push(await publisher.append('abc'[i % 3], { data: `${'abc'[i % 3]}${i}` }))
  const expected = [['a'], ['a', 'b'], ['b', 'c']].map(topics => appended.filter(event => topics.includes(event.topic)).map(event => event.data))
  for (const [i, client] of clients.entries()) await client.received(expected[i].length)
  await new Promise(resolve => setTimeout(resolve, 50))
  for (const [i, client] of clients.entries()) t.same(datas(client.events), expected[i], `client ${i}: every event once, in order`)
  const stats = app.eventHub.stats().store
  t.equal(stats?.reconnections, 1)
  t.equal(stats?.caughtUp, 39, 'what was published while it was away came from the history')
  t.equal(stats?.gaps, 0)
})

t.test('live events that arrive while the reader catches up wait, and follow the missed ones in order, once', async t => {
  const server = await redisServer(t)
  // The app's client: its duplicate (the live connection) reconnects after 300 ms, and its first XRANGE after the
  // cut (the catch-up's) lets a new event be published and reach the live connection before it answers.
  const client = new Redis({ port: server.port, host: '127.0.0.1', retryStrategy: () => 300 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const appStore = new RedisStore({ client, prefix: PREFIX })
  t.teardown(() => appStore.close())
  const publisher = store(t, server)
  const heard: string[] = []
  await appStore.listen('a', event => heard.push(event.data))
  await publisher.append('a', { data: 'before' })
  await until(() => heard.length === 1, 'the first event')
  let during = false
  const xrange = client.xrange.bind(client)
  client.xrange = (async (...args: Parameters<typeof xrange>) => {
    if (!during) {
      during = true
      await publisher.append('a', { data: 'during the catch-up' })
      await until(() => appStore.stats().waiting === 1, 'the live event to wait')
    }
    return await xrange(...args)
  }) as typeof client.xrange
  await admin(t, server).call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await publisher.append('a', { data: 'missed' })
  await until(() => heard.length === 3, 'the missed and the waiting event')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.same(heard, ['before', 'missed', 'during the catch-up'], 'in position order, each once')
  t.same({ caughtUp: appStore.stats().caughtUp, waiting: appStore.stats().waiting }, { caughtUp: 1, waiting: 0 })
})

t.test('the live connection away while the history trims what it missed: the subscribers are closed, the client resyncs', async t => {
  const server = await redisServer(t)
  const logs = captureLogs('error')
  const appStore = new RedisStore({ connection: { port: server.port, host: '127.0.0.1', retryStrategy: () => 300 }, prefix: PREFIX, historySize: 20 })
  t.teardown(() => appStore.close())
  const { app, url } = await hubServer(t, appStore, { log: logs.logger })
  const publisher = store(t, server, { historySize: 20 })
  const client = await sseClient(t, `${url}/events?topics=a`)
  await until(() => client.lastEventId() !== '', 'the position frame')
  await publisher.append('a', { data: 'seen' })
  await client.received(1)
  await admin(t, server).call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await Promise.all(Array.from({ length: 400 }, (_, i) => publisher.append('a', { data: String(i) })))
  await client.ended
  t.same(datas(client.events), ['seen'], 'nothing after the gap, and no silent skip')
  t.ok(logs.lines.some(line => line.err?.code === 'FST_SSE_STORE_GAP'), 'logged as a gap')
  t.equal(app.eventHub.stats().store?.gaps, 1)
  const again = await sseClient(t, `${url}/events?topics=a`, client.lastEventId())
  await again.received(1)
  t.equal(again.events[0].type, 'resync', 'the client resumes: its id is older than the history, so it resyncs')
})

t.test('the live connection lost while a SUBSCRIBE is out: the listen completes once Redis is back, and hears what follows', async t => {
  const server = await redisServer(t, { persistent: true })
  const warnings: string[] = []
  const appStore = store(t, server, { log: { warn: (_details, message) => warnings.push(message) } })
  await appStore.listen('first', () => {})
  // Redis sleeps, so the SUBSCRIBE below waits unanswered until the server is killed.
  admin(t, server).call('DEBUG', 'SLEEP', '1').catch(() => {})
  await new Promise(resolve => setTimeout(resolve, 50))
  const heard: string[] = []
  const pending = appStore.listen('a', event => heard.push(event.data))
  await new Promise(resolve => setTimeout(resolve, 100))
  await server.kill()
  await until(() => warnings.some(message => message.includes('reader lost its connection')), 'the failed SUBSCRIBE to be logged')
  await server.start()
  await pending
  await store(t, server).append('a', { data: 'after' })
  await until(() => heard.length === 1, 'the event')
  t.same(heard, ['after'])
})

t.test('publishes and subscriptions while Redis is down raise no MaxListenersExceededWarning', async t => {
  const server = await redisServer(t)
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const down = store(t, server, { timeout: 300 })
  await down.append('a', { data: 'up' })
  await server.kill()
  const results = await Promise.allSettled([
    ...Array.from({ length: 15 }, () => down.append('a', { data: 'down' })),
    ...Array.from({ length: 32 }, (_, i) => down.listen(`t${i}`, () => {}))
  ])
  t.ok(results.every(result => result.status === 'rejected'), 'each one rejected in bounded time')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.same(warnings.map(warning => warning.name), [])
})

t.test('Redis restarts with its data: the reader resumes after the last position it delivered, nothing lost', async t => {
  const server = await redisServer(t, { persistent: true })
  const { url } = await hubServer(t, store(t, server))
  const client = await sseClient(t, `${url}/events?topics=a`)
  await until(() => client.lastEventId() !== '', 'the position frame')
  const first = store(t, server)
  await first.append('a', { data: 'before' })
  await client.received(1)
  await server.kill()
  await server.start()
  // Published at once by a new publisher, while the app's reader may still be waiting to reconnect.
  const publisher = store(t, server)
  for (const data of ['after 1', 'after 2', 'after 3']) await publisher.append('a', { data })
  await client.received(4)
  t.same(datas(client.events), ['before', 'after 1', 'after 2', 'after 3'], 'the same stream, in order')
  const ids = client.events.map(event => Number(event.lastEventId))
  t.ok(ids.every((id, i) => i === 0 || id === ids[i - 1] + 1), 'the same epoch: positions go on from where they were')
})

t.test('Redis restarts without its data: subscribers are closed, and their ids resync instead of replaying', async t => {
  const server = await redisServer(t)
  const logs = captureLogs('error')
  const { url } = await hubServer(t, store(t, server), { log: logs.logger })
  const publisher = store(t, server)
  const client = await sseClient(t, `${url}/events?topics=a`)
  await until(() => client.lastEventId() !== '', 'the position frame')
  await publisher.append('a', { data: 'lost' })
  await client.received(1)
  const kept = client.lastEventId()
  await server.kill()
  await server.start()
  await client.ended
  t.ok(logs.lines.some(line => line.err?.message?.includes('lost its history') === true), 'logged as the store\'s reset')
  const after = await publisher.append('a', { data: 'new' })
  t.ok(after.seq > Number(kept), 'the new epoch\'s positions are above every old one')
  const again = await sseClient(t, `${url}/events?topics=a`, kept)
  await again.received(1)
  t.equal(again.events[0].type, 'resync', 'the old id resyncs')
  t.same(JSON.parse(again.events[0].data), { lastEventId: kept, topics: ['a'] })
})

t.test('a flush while connected: the next event shows the new epoch, subscribers are closed and resync', async t => {
  const server = await redisServer(t)
  const { url } = await hubServer(t, store(t, server))
  const publisher = store(t, server)
  const client = await sseClient(t, `${url}/events?topics=a`)
  await until(() => client.lastEventId() !== '', 'the position frame')
  await publisher.append('a', { data: 'one' })
  await client.received(1)
  const kept = client.lastEventId()
  await admin(t, server).flushall()
  await publisher.append('a', { data: 'two' })
  await client.ended
  t.same(datas(client.events), ['one'], 'nothing of the new epoch reached the old stream')
  const again = await sseClient(t, `${url}/events?topics=a`, kept)
  await again.received(1)
  t.equal(again.events[0].type, 'resync')
})

t.test('a failover to a replica that missed writes: the lost positions are never reused, their ids resync', async t => {
  const server = await redisServer(t)
  const app = store(t, server)
  const events = []
  for (let i = 0; i < 5; i++) events.push(await app.append('a', { data: `e${i}` }))
  // What a replica that missed the last two writes holds: those entries and the head that counted them are gone.
  const redis = admin(t, server)
  const key = `${PREFIX}:t:a`
  await redis.xdel(key, `${events[3].seq}-0`, `${events[4].seq}-0`)
  await redis.xsetid(key, `${events[2].seq}-0`, 'MAXDELETEDID', '0-0')
  await redis.hset(`${PREFIX}:meta`, 'head', String(events[2].seq))
  // This instance saw position e4, so its next append starts a new epoch above it.
  const next = await app.append('a', { data: 'next' })
  t.ok(next.seq > events[4].seq, 'no position is given twice')
  for (const lost of [events[3], events[4]]) {
    t.same((await app.readAfter(['a'], lost.id)).events, null, `an id of a lost write (${lost.data}) resyncs`)
  }
  t.same((await app.readAfter(['a'], events[1].id)).events, null, 'an id from before the new epoch resyncs')
  t.same(datas((await app.readAfter(['a'], String(next.seq - 1))).events ?? []), ['next'])
})

t.test('Redis unreachable: publish() rejects in bounded time with FST_SSE_STORE_UNAVAILABLE; later it works again', async t => {
  const server = await redisServer(t)
  const logs = captureLogs('error')
  const warnings: string[] = []
  const redisStore = store(t, server, { timeout: 300, log: { warn: (_details, message) => warnings.push(message) } })
  const { app, url } = await hubServer(t, redisStore, { log: logs.logger })
  await app.eventHub.publish('a', 'up')
  await server.kill()
  const started = Date.now()
  await t.rejects(app.eventHub.publish('a', 'down'), { code: 'FST_SSE_STORE_UNAVAILABLE', statusCode: 503 })
  const waited = Date.now() - started
  t.ok(waited >= 250 && waited < 2000, `rejected after ${waited} ms with a 300 ms timeout`)
  const client = await sseClient(t, `${url}/events?topics=b`)
  await client.ended
  t.ok(logs.lines.some(line => line.err?.message?.includes('unavailable') === true), 'a subscriber in the outage is closed, logged')
  t.ok(warnings.includes('event hub Redis connection error'), 'the failed reconnections were logged as warnings')
  await server.start()
  t.match(await app.eventHub.publish('a', 'back'), /^\d+$/)
})

/** A child process that runs an app on a RedisStore and must exit by itself after app.close(): nothing left open. */
const CHILD = `
import Fastify from 'fastify'
import fastifyEventStream from './dist/index.js'
import { RedisStore } from './dist/lib/stores/redis.js'
import http from 'node:http'
import { once } from 'node:events'
const app = Fastify()
await app.register(fastifyEventStream, { hub: { store: new RedisStore({ connection: process.env.REDIS_URL, prefix: '{child}', timeout: 200 }) } })
app.get('/events', (request, reply) => { app.eventHub.subscribe(reply.sse(), ['a']) })
await app.listen({ port: 0, host: '127.0.0.1' })
const response = await new Promise(resolve => http.get('http://127.0.0.1:' + app.server.address().port + '/events', { agent: false }, resolve))
response.resume()
await app.eventHub.publish('a', 'x').catch(err => console.log(err.code))
console.log('ready')
await once(process.stdin, 'data')
process.stdin.destroy()
await app.close()
console.log('closed')
`

async function childExits (t: Test, redisUrl: string, beforeClose: () => Promise<void>): Promise<void> {
  const child = execFile(process.execPath, ['--input-type=module', '-e', CHILD], { env: { ...process.env, REDIS_URL: redisUrl } })
  let output = ''
  child.stdout?.on('data', chunk => { output += chunk })
  await until(() => output.includes('ready'), 'the child to start')
  await beforeClose()
  child.stdin?.write('close\n')
  const timer = setTimeout(() => child.kill('SIGKILL'), 8000)
  const [code, signal] = await once(child, 'exit')
  clearTimeout(timer)
  t.equal(signal, null, 'exited by itself: no connection, timer or listener kept it alive')
  t.equal(code, 0)
  t.match(output, /closed/)
}

t.test('nothing is left behind after app.close(): connected, Redis gone meanwhile, Redis never reachable', async t => {
  // dist is built by `npm run test:redis` before the suites start: building again here rewrote it under the other
  // suites' child processes (a run instance that loaded a half-written module died, and its test waited forever).
  const server = await redisServer(t)
  await childExits(t, server.url, async () => {})
  await childExits(t, server.url, () => server.kill())
  await childExits(t, 'redis://127.0.0.1:1', async () => {})
})
