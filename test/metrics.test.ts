import diagnostics from 'node:diagnostics_channel'
import { once } from 'node:events'
import http from 'node:http'
import t from 'tap'
import Fastify from 'fastify'
import fastifyMetricsModule from 'fastify-metrics'
import promClient from 'prom-client'
import fastifyEventStream, { CHANNELS, MemoryStore, type EventStore, type EventStream } from '../index.js'
import eventStreamMetrics from '../lib/metrics.js'
import { build, get, listen, readAll, readUntil } from './helpers.js'

/** The samples of a Prometheus text exposition: `name{labels}` to value; TYPE lines as `# TYPE name`. */
function parseExposition (text: string): Map<string, number | string> {
  const samples = new Map<string, number | string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) samples.set(`# TYPE ${type[1]}`, type[2])
    if (line === '' || line.startsWith('#')) continue
    const match = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not an exposition line: ${JSON.stringify(line)}`)
    samples.set(match[1] + (match[2] ?? ''), Number(match[3]))
  }
  return samples
}

/** GET over a real socket; the body as text. */
async function scrape (url: string): Promise<{ type: string, samples: Map<string, number | string> }> {
  const response = await get(url)
  return { type: String(response.headers['content-type']), samples: parseExposition(await readAll(response)) }
}

/** Bytes of a response body as its client decoded them (chunked framing removed). */
function countBody (response: http.IncomingMessage): { bytes: number } {
  const counted = { bytes: 0 }
  response.on('data', (chunk: Buffer) => { counted.bytes += chunk.length })
  return counted
}

t.test('/metrics scraped over a real socket: open streams, messages and bytes sent, ends by reason, refusals, publish durations', async t => {
  const registry = new promClient.Registry()
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false, admission: { maxStreams: 2 } })
  await app.register(eventStreamMetrics, { client: promClient, registry, endpoint: '/metrics' })
  t.teardown(() => app.close())
  const streams: EventStream[] = []
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    if (stream.closed) return
    streams.push(stream)
    app.eventHub.subscribe(stream, 'news').catch(() => {})
  })
  app.get('/closed', async (_request, reply) => {
    const stream = reply.sse()
    await stream.comment('closing')
    await stream.close()
  })
  const url = await listen(app)
  const clients = [await get(`${url}/events`), await get(`${url}/events`)]
  const bodies = clients.map(countBody)
  await waitFor(() => app.eventHub.stats().subscribers.news === 2)
  for (let i = 0; i < 5; i++) await app.eventHub.publish('news', `event ${i}`)
  await streams[0].message('only to the first')
  const refused = await get(`${url}/events`)
  refused.resume()
  t.equal(refused.statusCode, 503)
  const leaving = once(streams[1].signal, 'abort')
  clients[1].destroy()
  await leaving
  const closed = await get(`${url}/closed`)
  const agedBody = countBody(closed)
  await once(closed, 'end')
  await waitFor(() => bodies[0].bytes > 0 && app.eventHub.stats().sent.bytes === bodies[0].bytes + bodies[1].bytes + agedBody.bytes)

  const { type, samples } = await scrape(`${url}/metrics`)
  t.match(type, /^text\/plain/)
  t.equal(samples.get('sse_node_num_clients'), 1, 'one stream open')
  t.equal(samples.get('# TYPE sse_node_num_clients'), 'gauge')
  t.equal(samples.get('sse_node_num_subscriptions'), 1)
  t.equal(samples.get('sse_node_num_channels'), 1)
  t.equal(samples.get('sse_transport_connect_count'), 3, 'three opened; the refused one is not a stream')
  t.equal(samples.get('# TYPE sse_transport_connect_count'), 'counter')
  t.equal(samples.get('sse_client_num_disconnects{reason="client"}'), 1)
  t.equal(samples.get('sse_client_num_disconnects{reason="server"}'), 1)
  t.equal(samples.get('sse_client_num_disconnects{reason="slow"}'), 0)
  t.equal(samples.get('sse_client_connection_limit_reached_total{reason="streams"}'), 1)
  t.equal(samples.get('sse_client_connection_limit_reached_total{reason="pressure"}'), 0)
  t.equal(samples.get('sse_node_messages_published'), 5)
  t.equal(samples.get('sse_node_messages_delivered'), 10)
  // Each subscriber: its position frame, five events (however the hub joined them in writes); the first, one more;
  // the closed stream: its comment.
  t.equal(samples.get('sse_transport_messages_sent'), 2 * 6 + 1 + 1)
  t.equal(samples.get('sse_transport_messages_sent_size'), bodies[0].bytes + bodies[1].bytes + agedBody.bytes, 'exactly the body bytes the clients received')
  t.equal(samples.get('sse_node_broadcast_duration_seconds_count'), 5, 'every publish timed')
  t.equal(samples.get('# TYPE sse_node_broadcast_duration_seconds'), 'histogram')
  t.equal(samples.get('sse_node_pub_sub_lag_seconds'), 0, 'the memory store has no lag')
  clients[0].destroy()
})

t.test('with fastify-metrics, its client and registry are used: its /metrics shows ours; closing removes them', async t => {
  const app = Fastify()
  // fastify-metrics is CommonJS with its plugin as `default`.
  const fastifyMetrics = (fastifyMetricsModule as unknown as { default: typeof fastifyMetricsModule }).default ?? fastifyMetricsModule
  await app.register(fastifyMetrics as never, { endpoint: '/metrics', defaultMetrics: { enabled: false }, routeMetrics: { enabled: false } })
  await app.register(fastifyEventStream)
  await app.register(eventStreamMetrics, { prefix: 'app_sse_' })
  app.get('/events', (_request, reply) => { reply.sse().message('hello') })
  const url = await listen(app)
  const client = await get(`${url}/events`)
  await readUntil(client, 'hello')
  const { samples } = await scrape(`${url}/metrics`)
  t.equal(samples.get('app_sse_node_num_clients'), 1)
  t.equal(samples.get('app_sse_transport_messages_sent'), 1)
  client.destroy()
  const register = (app as unknown as { metrics: { client: typeof promClient } }).metrics.client.register
  await app.close()
  t.equal(register.getSingleMetric('app_sse_node_num_clients'), undefined, 'removed with the app')
})

t.test("without a client or fastify-metrics, prom-client's global registry", async t => {
  const app = await build(t)
  await app.register(eventStreamMetrics, { endpoint: '/scrape' })
  const url = await listen(app)
  t.equal((await scrape(`${url}/scrape`)).samples.get('sse_node_num_clients'), 0)
  t.ok(promClient.register.getSingleMetric('sse_node_num_clients'))
})

t.test("the store's lag; publishes of another app in the process are not this app's", async t => {
  const inner = new MemoryStore()
  const store: EventStore = {
    append: inner.append.bind(inner),
    readAfter: inner.readAfter.bind(inner),
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner),
    stats: () => ({ lagMs: 1500 })
  }
  const registry = new promClient.Registry()
  const app = await build(t, { hub: { store } })
  await app.register(eventStreamMetrics, { client: promClient, registry, endpoint: '/metrics' })
  const other = await build(t)
  await other.eventHub.publish('elsewhere', 'not ours')
  const { samples } = await scrape(`${await listen(app)}/metrics`)
  t.equal(samples.get('sse_node_pub_sub_lag_seconds'), 1.5)
  t.equal(samples.get('sse_node_broadcast_duration_seconds_count'), 0)
})

t.test('without prom-client installed (and no client, no fastify-metrics): a coded error that says what to install', async t => {
  const { default: metrics } = await t.mockImport<typeof import('../lib/metrics.js')>('../lib/metrics.js', {
    'prom-client': { get default () { throw new Error("Cannot find package 'prom-client'") } }
  })
  const app = await build(t)
  await t.rejects(async () => { await app.register(metrics) }, { code: 'FST_SSE_INVALID_OPTION', message: /install prom-client/ })
})

t.test('bad metrics options fail registration with FST_SSE_INVALID_OPTION; the plugin needs fastify-event-stream', async t => {
  for (const options of [{ prefix: 'not a name' }, { endpoint: 'metrics' }]) {
    const app = Fastify()
    await app.register(fastifyEventStream)
    await t.rejects(async () => { await app.register(eventStreamMetrics, { client: promClient, registry: new promClient.Registry(), ...options }) }, { code: 'FST_SSE_INVALID_OPTION' }, JSON.stringify(options))
    await app.close()
  }
  const bare = Fastify()
  await t.rejects(async () => { await bare.register(eventStreamMetrics, { client: promClient }).ready() }, /fastify-event-stream/)
})

t.test('diagnostics channels: open, close with its reason, refused, publish (with its hub) and deliver', async t => {
  const seen: Array<[string, Record<string, unknown>]> = []
  const listeners = Object.entries(CHANNELS).map(([name, channel]) => {
    const listener = (message: unknown): void => { seen.push([name, message as Record<string, unknown>]) }
    diagnostics.subscribe(channel, listener)
    return () => diagnostics.unsubscribe(channel, listener)
  })
  t.teardown(() => { for (const stop of listeners) stop() })
  const app = await build(t, { admission: { maxStreams: 1 }, maxBufferedBytes: 64 * 1024 })
  let stream!: EventStream
  app.get('/events', (_request, reply) => {
    const opened = reply.sse()
    if (opened.closed) return
    stream = opened
    app.eventHub.subscribe(opened, 'news').catch(() => {})
  })
  const url = await listen(app)
  const client = await get(`${url}/events`)
  await waitFor(() => app.eventHub.stats().subscribers.news === 1)
  const refused = await get(`${url}/events`)
  refused.resume()
  await app.eventHub.publish('news', 'one')
  await readUntil(client, 'one')
  // Published and left in the same tick: the tick's event reaches nobody, which is no delivery.
  const last = app.eventHub.publish('news', 'two')
  const closing = stream.close()
  await last
  await closing
  await once(client.resume(), 'end')

  const names = seen.map(([name]) => name)
  t.same(names.filter(name => name !== 'hubDeliver'), ['streamOpen', 'streamRefused', 'hubPublish', 'streamClose', 'hubPublish'])
  const [, open] = seen.find(([name]) => name === 'streamOpen') as [string, Record<string, unknown>]
  t.equal(open.stream, stream)
  t.equal((open.request as { url: string }).url, '/events')
  t.equal(seen.find(([name]) => name === 'streamRefused')?.[1].reason, 'streams')
  const publish = seen.find(([name]) => name === 'hubPublish')?.[1] as Record<string, unknown>
  t.equal(publish.hub, app.eventHub)
  t.equal(publish.topic, 'news')
  t.ok(typeof publish.duration === 'number' && publish.duration >= 0)
  t.same(seen.filter(([name]) => name === 'hubDeliver').map(([, message]) => message), [{ hub: app.eventHub, deliveries: 1 }])
  t.same(seen.find(([name]) => name === 'streamClose')?.[1], { stream, reason: 'server' })
})

t.test('every reason a stream ends is counted: client, server, slow, shutdown, error; and age', async t => {
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false, maxBufferedBytes: 64 * 1024, reconnectWindow: false })
  app.get('/:how', async (request, reply) => {
    const how = (request.params as { how: string }).how
    const stream = reply.sse()
    if (how === 'server') await stream.close()
    if (how === 'slow') while (!stream.closed) { stream.message('z'.repeat(16 * 1024)); await new Promise(resolve => setImmediate(resolve)) }
    if (how === 'error') reply.raw.emit('error', new Error('the response failed'))
    if (how === 'client' || how === 'shutdown') await stream.comment(how)
  })
  const url = await listen(app)
  const client = await get(`${url}/client`)
  await readUntil(client, ': client')
  client.destroy()
  ;(await get(`${url}/server`)).resume()
  const slow = await get(`${url}/slow`)
  slow.pause()
  ;(await get(`${url}/error`)).on('error', () => {}).resume()
  const shutdown = await get(`${url}/shutdown`)
  shutdown.resume()
  await waitFor(() => app.eventHub.stats().closed.slow === 1 && app.eventHub.stats().closed.client === 1 && app.eventHub.stats().closed.error === 1)
  await app.close()
  slow.destroy()
  t.same(app.eventHub.stats().closed, { client: 1, server: 1, slow: 1, age: 0, shutdown: 1, error: 1 })
  t.equal(app.eventHub.stats().opened, 5)

  const aging = await build(t, { maxStreamAge: 100, maxStreamAgeJitter: 0, reconnectWindow: false })
  aging.get('/', (_request, reply) => { reply.sse().comment('aging') })
  const aged = await get(`${await listen(aging)}/`)
  await once(aged.resume(), 'end')
  t.same(aging.eventHub.stats().closed, { client: 0, server: 0, slow: 0, age: 1, shutdown: 0, error: 0 })
})

t.test('messages sent count what a subscriber cut off by a joined batch received, not the batch it refused', async t => {
  const app = await build(t, { heartbeat: false, maxBufferedBytes: 64 * 1024 })
  let stream!: EventStream
  app.get('/events', (_request, reply) => {
    stream = reply.sse()
    app.eventHub.subscribe(stream, 'big').catch(() => {})
  })
  const slow = await get(`${await listen(app)}/events`)
  slow.pause()
  await waitFor(() => app.eventHub.stats().subscribers.big === 1)
  const big = 'z'.repeat(8 * 1024)
  // What the stream sent as it opened (its retry hint) is counted apart.
  const opening = app.eventHub.stats().sent.messages
  // Three events a tick reach the stream as one joined frame, until one such frame crosses its bound.
  let ticks = 0
  while (!stream.closed) {
    for (let i = 0; i < 3; i++) app.eventHub.publish('big', big).catch(() => {})
    await new Promise(resolve => setImmediate(resolve))
    ticks++
  }
  slow.destroy()
  t.equal(app.eventHub.stats().closed.slow, 1, 'cut off by a joined frame')
  t.ok(ticks > 1)
  t.equal(app.eventHub.stats().sent.messages - opening, 3 * (ticks - 1), 'every tick before the cut counted as its three events; the refused one not at all')
})

async function waitFor (check: () => boolean): Promise<void> {
  while (!check()) await new Promise(resolve => setTimeout(resolve, 5))
}
