// One delivery path for both shapes: events that reach the hub in the same tick go to each subscriber's socket as
// one write (one joined frame shared by every subscriber that gets the same events), one event per tick as one
// ready-made chunk. Exact about bytes, order and bounds on HTTP/1.1 chunked, HTTP/2 and app.inject().
import { once } from 'node:events'
import http2 from 'node:http2'
import net from 'node:net'
import t, { type Test } from 'tap'
import { encodeMessage, EventStream, injectEventStream, MemoryStore, type EventStore } from '../index.js'
import { build, captureLogs, listen, readUntil, tick, until } from './helpers.js'

/** Counts the socket writes that carry `marker` (whatever path they took). */
function spyWrites (t: Test, marker: string): { writes: number } {
  const counts = { writes: 0 }
  const write = net.Socket.prototype.write
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    if ((Buffer.isBuffer(chunk) || typeof chunk === 'string') && chunk.includes(marker)) counts.writes++
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof write
  t.teardown(() => { net.Socket.prototype.write = write })
  return counts
}

/** A raw HTTP/1.1 client reading one stream: everything received, as text. */
async function rawStream (url: string, path: string, headers = ''): Promise<{ socket: net.Socket, text: () => string }> {
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => { received += chunk })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`)
  return { socket, text: () => received }
}

/** The body of a chunked response: the chunks' contents, joined. */
function dechunk (raw: string): { body: string, chunks: number } {
  let rest = raw.slice(raw.indexOf('\r\n\r\n') + 4)
  let body = ''
  let chunks = 0
  for (;;) {
    const line = rest.indexOf('\r\n')
    if (line === -1) break
    const size = parseInt(rest.slice(0, line), 16)
    if (Number.isNaN(size) || rest.length < line + 2 + size + 2) break
    body += rest.slice(line + 2, line + 2 + size)
    rest = rest.slice(line + 2 + size + 2)
    chunks++
    if (size === 0) break
  }
  return { body, chunks }
}

async function hubApp (t: Test, options: object = {}): Promise<{ app: Awaited<ReturnType<typeof build>>, url: string, streams: EventStream[] }> {
  const app = await build(t, { heartbeat: false, ...options })
  const streams: EventStream[] = []
  app.get<{ Querystring: { topics: string, team?: string } }>('/events', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    const { team } = request.query
    app.eventHub.subscribe(stream, request.query.topics.split(','), team === undefined ? {} : { filter: { tag: 'team', eq: team } })
  })
  return { app, url: await listen(app), streams }
}

t.test('100 events published in one tick, not awaited or each awaited, reach each of 3 subscribers in one socket write, byte-exact and in order', async t => {
  const shapes = {
    // Fired in one tick, awaited together.
    together: async (publish: (i: number) => Promise<string>) => await Promise.all(Array.from({ length: 100 }, async (_, i) => await publish(i))),
    // As users write a batch: each publish awaited before the next.
    awaited: async (publish: (i: number) => Promise<string>) => {
      const ids: string[] = []
      for (let i = 0; i < 100; i++) ids.push(await publish(i))
      return ids
    }
  }
  for (const [shape, publishAll] of Object.entries(shapes)) {
    const { app, url } = await hubApp(t)
    const clients = await Promise.all([1, 2, 3].map(async () => await rawStream(url, `/events?topics=${shape}`)))
    await until(() => app.eventHub.stats().subscribers[shape] === 3 && clients.every(client => dechunk(client.text()).chunks === 1), 'three subscribers with their position frame')
    const counts = spyWrites(t, `${shape}-`)
    const ids = await publishAll(async i => await app.eventHub.publish(shape, `${shape}-${i}`))
    const expected = ids.map((id, i) => `id: ${id}\ndata: ${shape}-${i}\n\n`).join('')
    await until(() => clients.every(client => dechunk(client.text()).body.endsWith(`${shape}-99\n\n`)), 'every event')
    for (const client of clients) {
      const { body, chunks } = dechunk(client.text())
      t.equal(body.slice(body.indexOf('\n\n') + 2), expected, `${shape}: the 100 events, exactly, after the position frame`)
      t.equal(chunks, 2, `${shape}: the position frame, then one chunk for the 100 events`)
      client.socket.destroy()
    }
    t.equal(counts.writes, 3, `${shape}: one socket write per subscriber`)
    t.equal(app.eventHub.stats().delivered, 300)
  }
})

t.test('stream.write() in a loop: the first frame of a tick goes straight to the socket, the rest of the tick in one more write', async t => {
  const app = await build(t, { heartbeat: false })
  const streams: EventStream[] = []
  app.get('/raw', (_request, reply) => { streams.push(reply.sse()) })
  const url = await listen(app)
  const clients = await Promise.all([1, 2, 3].map(async () => await rawStream(url, '/raw')))
  await until(() => streams.length === 3 && clients.every(client => client.text().includes('\r\n\r\n')), 'three open streams')
  const counts = spyWrites(t, 'loop-')
  const frames = Array.from({ length: 100 }, (_, i) => encodeMessage(`loop-${i}`))
  // A broadcast loop as users write it: each frame to every stream, all in one tick.
  await new Promise<void>(resolve => setImmediate(() => {
    for (const frame of frames) for (const stream of streams) stream.write(frame).catch(() => {})
    resolve()
  }))
  const expected = frames.map(frame => frame.toString()).join('')
  await until(() => clients.every(client => dechunk(client.text()).body.endsWith('loop-99\n\n')), 'every frame')
  for (const client of clients) {
    const { body, chunks } = dechunk(client.text())
    t.equal(body, expected, 'the 100 frames, exactly, in order')
    t.equal(chunks, 2, 'the first frame as its own chunk, then one for the other 99')
    client.socket.destroy()
  }
  t.equal(counts.writes, 6, 'two socket writes per stream')
  // The next tick starts straight again.
  const next = await rawStream(url, '/raw')
  await until(() => streams.length === 4 && next.text().includes('\r\n\r\n'), 'a fourth stream')
  await streams[3].write(encodeMessage('loop-next-1'))
  await tick()
  await streams[3].write(encodeMessage('loop-next-2'))
  await until(() => dechunk(next.text()).body.endsWith('loop-next-2\n\n'), 'both frames')
  t.equal(dechunk(next.text()).chunks, 2, 'one chunk each: a frame per tick keeps the direct path')
  next.socket.destroy()
})

t.test('one event per tick: one ready-made chunk per event, each written as it comes', async t => {
  const { app, url } = await hubApp(t)
  const client = await rawStream(url, '/events?topics=one')
  await until(() => dechunk(client.text()).chunks === 1, 'the position frame')
  const counts = spyWrites(t, 'single-')
  for (let i = 0; i < 5; i++) {
    await app.eventHub.publish('one', `single-${i}`)
    await until(() => dechunk(client.text()).chunks === 2 + i, `event ${i}`)
  }
  t.equal(counts.writes, 5)
  client.socket.destroy()
})

t.test('a subscriber of several topics gets a tick\'s events of all of them in position order, in one write; one of a single topic gets its own', async t => {
  const { app, url } = await hubApp(t)
  const both = await rawStream(url, '/events?topics=a,b')
  const onlyA = await rawStream(url, '/events?topics=a')
  const onlyB = await rawStream(url, '/events?topics=b')
  await until(() => [both, onlyA, onlyB].every(client => dechunk(client.text()).chunks === 1), 'the position frames')
  const published = await Promise.all(['a', 'b', 'a', 'a', 'b'].map(async (topic, i) => ({ topic, id: await app.eventHub.publish(topic, `${topic}${i}`), data: `${topic}${i}` })))
  const frames = (topic?: string): string => published.filter(event => topic === undefined || event.topic === topic).map(event => `id: ${event.id}\ndata: ${event.data}\n\n`).join('')
  await until(() => dechunk(both.text()).chunks === 2 && dechunk(onlyA.text()).chunks === 2 && dechunk(onlyB.text()).chunks === 2, 'one chunk each')
  const after = (client: { text: () => string }): string => { const { body } = dechunk(client.text()); return body.slice(body.indexOf('\n\n') + 2) }
  t.equal(after(both), frames(), 'a0 b1 a2 a3 b4, merged in position order')
  t.equal(after(onlyA), frames('a'))
  t.equal(after(onlyB), frames('b'))
  for (const client of [both, onlyA, onlyB]) client.socket.destroy()
})

t.test('order: message() and the hub in the same tick leave in the order they were written, from a macrotask and from a microtask', async t => {
  const { app, url, streams } = await hubApp(t)
  const client = await rawStream(url, '/events?topics=o')
  await until(() => dechunk(client.text()).chunks === 1 && streams.length === 1, 'the position frame')
  const [stream] = streams
  const body = (): string => { const { body } = dechunk(client.text()); return body.slice(body.indexOf('\n\n') + 2) }
  // From a macrotask: message, publish, message, publish.
  let ids: string[] = []
  await new Promise<void>(resolve => setImmediate(() => {
    stream.message('m1')
    const first = app.eventHub.publish('o', 'h1')
    stream.message('m2')
    const second = app.eventHub.publish('o', 'h2')
    Promise.all([first, second]).then(published => { ids = published; resolve() }, resolve)
  }))
  await until(() => body().includes('h2'), 'the second hub event')
  t.equal(body(), `data: m1\n\nid: ${ids[0]}\ndata: h1\n\ndata: m2\n\nid: ${ids[1]}\ndata: h2\n\n`)
  // From a microtask: publish first, then message and close in the same tick.
  const before = body().length
  await Promise.resolve().then(() => {
    const published = app.eventHub.publish('o', 'h3')
    stream.message('m3')
    return published
  }).then(id => { ids.push(id) })
  await until(() => body().includes('m3'), 'm3')
  t.equal(body().slice(before), `id: ${ids[2]}\ndata: h3\n\ndata: m3\n\n`)
  // A stream closed in the tick of a publish gets the event before its end.
  setImmediate(() => {
    app.eventHub.publish('o', 'h4').catch(() => {})
    stream.close().catch(() => {})
  })
  await until(() => client.text().endsWith('0\r\n\r\n'), 'the end of the body')
  t.match(body().slice(before), /data: m3\n\nid: \d+\ndata: h4\n\n$/, 'h4, then the end')
  client.socket.destroy()
})

t.test('order: awaited publishes and message() in one loop, then close(): every frame in the order written, on HTTP/1.1, HTTP/2 and app.inject()', async t => {
  /** Publishes h0..h9 awaited, each followed by a message() to the subscriber, then closes it: what the client must get. */
  async function loop (app: Awaited<ReturnType<typeof build>>, stream: EventStream, topic: string): Promise<string> {
    let expected = ''
    for (let i = 0; i < 10; i++) {
      const id = await app.eventHub.publish(topic, `h${i}`)
      stream.message(`m${i}`)
      expected += `id: ${id}\ndata: h${i}\n\ndata: m${i}\n\n`
    }
    // The last publish, awaited right before close(): its event still goes first.
    const id = await app.eventHub.publish(topic, 'last')
    await stream.close()
    return expected + `id: ${id}\ndata: last\n\n`
  }

  const { app, url, streams } = await hubApp(t)
  const client = await rawStream(url, '/events?topics=l1')
  await until(() => dechunk(client.text()).chunks === 1 && streams.length === 1, 'the HTTP/1.1 subscriber')
  const expected = await loop(app, streams[0], 'l1')
  await until(() => client.text().endsWith('0\r\n\r\n'), 'the end of the HTTP/1.1 body')
  const { body } = dechunk(client.text())
  t.equal(body.slice(body.indexOf('\n\n') + 2), expected, 'HTTP/1.1 chunked')
  client.socket.destroy()

  const injected = await injectEventStream(app, '/events?topics=l2')
  const received: string[] = []
  const reading = (async () => { for await (const event of injected) received.push(`${event.lastEventId === '' ? '' : `id: ${event.lastEventId}\n`}data: ${event.data}\n\n`) })()
  await until(() => app.eventHub.stats().subscribers.l2 === 1 && streams.length === 2, 'the injected subscriber')
  await tick()
  const injectedExpected = await loop(app, streams[1], 'l2')
  await reading
  // The client's parser keeps the last id for events without one: compare what the frames carried, in order.
  t.same(received.map(frame => frame.replace(/^id: .*\n(data: m)/, '$1')), injectedExpected.split(/(?<=\n\n)/), 'app.inject()')

  const h2app = await build(t, { heartbeat: false }, { http2: true })
  const h2streams: EventStream[] = []
  h2app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    h2streams.push(stream)
    h2app.eventHub.subscribe(stream, 'l3')
  })
  const session = http2.connect(await listen(h2app))
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/events' })
  request.setEncoding('utf8')
  const position = await readUntil(request, '\n\n')
  await until(() => h2app.eventHub.stats().subscribers.l3 === 1, 'the HTTP/2 subscriber')
  const h2expected = await loop(h2app, h2streams[0], 'l3')
  let text = ''
  for await (const chunk of request) text += chunk as string
  t.equal((position + text).slice(position.indexOf('\n\n') + 2), h2expected, 'HTTP/2')
})

t.test('bounds: ticks of 200 KiB reach a reading client in full, and a client that stopped reading is cut off at the bound', async t => {
  const { logger, lines } = captureLogs('warn')
  const app = await build(t, { heartbeat: false, maxBufferedBytes: 256 * 1024 }, { logger })
  const streams: EventStream[] = []
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    app.eventHub.subscribe(stream, 'big')
  })
  const url = await listen(app)
  const reading = await rawStream(url, '/events')
  const stalled = await rawStream(url, '/events')
  await until(() => app.eventHub.stats().subscribers.big === 2 && dechunk(reading.text()).chunks === 1 && dechunk(stalled.text()).chunks === 1, 'two subscribers')
  stalled.socket.pause()
  // Ticks of 50 events of 4 KiB (joined into frames of up to 64 KiB), until the stalled client's socket is full.
  const data = 'z'.repeat(4096)
  let ticks = 0
  while (!streams[1].closed && ticks < 200) {
    await Promise.all(Array.from({ length: 50 }, async () => await app.eventHub.publish('big', data)))
    ticks++
    await until(() => dechunk(reading.text()).body.split('\n\n').length - 2 === ticks * 50, `tick ${ticks} at the reading client`)
  }
  t.ok(streams[1].closed, `the stalled client was cut off (after ${ticks} ticks)`)
  t.equal(streams[0].closed, false, 'the reading client was not')
  t.ok(lines.some(line => line.msg.includes('too slow') && (line.bufferedBytes as number) <= 256 * 1024 + 64 * 1024 + 4200), 'at the bound, logged')
  t.equal(app.eventHub.stats().cutOff, 1)
  reading.socket.destroy()
  stalled.socket.destroy()
})

t.test('HTTP/2 and app.inject(): a tick\'s events arrive exactly, in order', async t => {
  const { app, streams } = await hubApp(t)
  const injected = await injectEventStream(app, '/events?topics=h')
  const received: Array<{ id: string, data: string }> = []
  ;(async () => { for await (const event of injected) received.push({ id: event.lastEventId, data: event.data }) })().catch(() => {})
  await until(() => app.eventHub.stats().subscribers.h === 1 && streams.length === 1, 'the subscription')
  await new Promise(resolve => setTimeout(resolve, 20))
  const injectedIds = await Promise.all(Array.from({ length: 20 }, (_, i) => app.eventHub.publish('h', `inject-${i}`)))
  await until(() => received.length === 20, 'every event through inject')
  t.same(received, injectedIds.map((id, i) => ({ id, data: `inject-${i}` })), 'app.inject(): every event, in order')
  await injected.close()

  const h2app = await build(t, { heartbeat: false }, { http2: true })
  h2app.get('/events', (_request, reply) => { h2app.eventHub.subscribe(reply.sse(), 'h') })
  const url = await listen(h2app)
  const session = http2.connect(url)
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/events' })
  request.setEncoding('utf8')
  await readUntil(request, '\n\n')
  await until(() => h2app.eventHub.stats().subscribers.h === 1, 'the subscription')
  const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => h2app.eventHub.publish('h', `h2-${i}`)))
  const text = await readUntil(request, 'h2-19\n\n')
  t.equal(text, ids.map((id, i) => `id: ${id}\ndata: h2-${i}\n\n`).join(''))
  request.close()
})

t.test('subscribers with the same topics share one merged frame; a tick with events of only one of their topics', async t => {
  const { app, url } = await hubApp(t)
  const clients = await Promise.all([1, 2].map(async () => await rawStream(url, '/events?topics=a,b')))
  await until(() => clients.every(client => dechunk(client.text()).chunks === 1), 'the position frames')
  const counts = spyWrites(t, 'shared-')
  const onlyA = await Promise.all([0, 1].map(async i => await app.eventHub.publish('a', `shared-a${i}`)))
  await until(() => clients.every(client => dechunk(client.text()).chunks === 2), 'the first tick')
  const mixed = await Promise.all(['b', 'a'].map(async topic => await app.eventHub.publish(topic, `shared-${topic}`)))
  await until(() => clients.every(client => dechunk(client.text()).chunks === 3), 'the second tick')
  const expected = `id: ${onlyA[0]}\ndata: shared-a0\n\nid: ${onlyA[1]}\ndata: shared-a1\n\nid: ${mixed[0]}\ndata: shared-b\n\nid: ${mixed[1]}\ndata: shared-a\n\n`
  for (const client of clients) {
    const { body } = dechunk(client.text())
    t.equal(body.slice(body.indexOf('\n\n') + 2), expected)
    client.socket.destroy()
  }
  t.equal(counts.writes, 4, 'one write per subscriber per tick')
})

t.test('events larger than the join limit go one frame each, in order', async t => {
  const { app, url } = await hubApp(t)
  const client = await rawStream(url, '/events?topics=big')
  await until(() => dechunk(client.text()).chunks === 1, 'the position frame')
  const big = ['x', 'y', 'z'].map(letter => letter.repeat(70 * 1024))
  const ids = await Promise.all(big.map(async data => await app.eventHub.publish('big', data)))
  await until(() => dechunk(client.text()).chunks === 4, 'three chunks', 10_000)
  const { body } = dechunk(client.text())
  t.equal(body.slice(body.indexOf('\n\n') + 2), ids.map((id, i) => `id: ${id}\ndata: ${big[i]}\n\n`).join(''))
  client.socket.destroy()
})

t.test('a stream unsubscribed while the hub holds an event for it gets nothing of the hub, and what it writes itself', async t => {
  const { app, url, streams } = await hubApp(t)
  const client = await rawStream(url, '/events?topics=u')
  await until(() => dechunk(client.text()).chunks === 1 && streams.length === 1, 'the position frame')
  await new Promise<void>(resolve => setImmediate(() => {
    app.eventHub.publish('u', 'not for it').catch(() => {})
    app.eventHub.unsubscribe(streams[0])
    streams[0].message('its own')
    resolve()
  }))
  await until(() => dechunk(client.text()).body.includes('its own'), 'its own message')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.notMatch(dechunk(client.text()).body, /not for it/)
  client.socket.destroy()
})

t.test('a subscriber still replaying that is written to while the hub holds an event for it gets the event once, after its replay', async t => {
  const inner = new MemoryStore()
  let open!: () => void
  const gate = new Promise<void>(resolve => { open = resolve })
  const store: EventStore = {
    append: inner.append.bind(inner),
    async readAfter (topics, lastEventId) { await gate; return await inner.readAfter(topics, lastEventId) },
    listen: inner.listen.bind(inner),
    close: inner.close.bind(inner)
  }
  const { app, url, streams } = await hubApp(t, { hub: { store } })
  const first = await app.eventHub.publish('r', 'replayed')
  const client = await rawStream(url, '/events?topics=r', `Last-Event-ID: ${Number(first) - 1}\r\n`)
  await until(() => app.eventHub.stats().subscribers.r === 1 && streams.length === 1, 'the subscription')
  let live = ''
  await new Promise<void>(resolve => setImmediate(() => {
    app.eventHub.publish('r', 'live').then(id => { live = id }, () => {})
    streams[0].comment('note')
    resolve()
  }))
  open()
  await until(() => dechunk(client.text()).body.includes('data: live'), 'the live event')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(dechunk(client.text()).body, `: note\n\nid: ${first}\ndata: replayed\n\nid: ${live}\ndata: live\n\n`, 'the comment, the replay, the live event once')
  client.socket.destroy()
})

t.test('a stream of another registration that ended is dropped by a tick of several events', async t => {
  const { app } = await hubApp(t)
  const other = await build(t, { heartbeat: false })
  let stream: EventStream | undefined
  other.get('/elsewhere', (_request, reply) => { stream = reply.sse() })
  const response = await injectEventStream(other, '/elsewhere')
  t.equal(await app.eventHub.subscribe(stream as EventStream, 'gone'), true)
  await response.close()
  await Promise.all([app.eventHub.publish('gone', 'x'), app.eventHub.publish('gone', 'y')])
  await tick()
  t.same(app.eventHub.stats().subscribers, {})
  t.equal(app.eventHub.stats().delivered, 0)
})

/**
 * Makes each of the hub's writes to a stream take `ms` of the event loop (as a full socket's write does at scale),
 * and records which streams the hub wrote to.
 */
function slowWrites (t: Test, ms: number): Set<EventStream> {
  const written = new Set<EventStream>()
  const write = EventStream.prototype.write
  EventStream.prototype.write = function (frame) {
    written.add(this)
    const until = performance.now() + ms
    while (performance.now() < until);
    return write.call(this, frame)
  }
  t.teardown(() => { EventStream.prototype.write = write })
  return written
}

/**
 * A write's time in the slicing tests: 32 of them (the writer's look at the clock) take more than its 8 ms slice, so
 * every slice is 32 subscribers however fast the machine, and the turns of the event loop fall where a test says.
 */
const SLICED_WRITE_MS = 0.3

/** The events of a raw stream after its position frame, as `data` lines. */
function dataOf (client: { text: () => string }): string[] {
  return [...dechunk(client.text()).body.matchAll(/^data: (.*)$/gm)].map(match => match[1])
}

t.test('a fan-out longer than its slice lets the event loop turn between slices; every subscriber gets every event once, in order', async t => {
  const { app, url, streams } = await hubApp(t)
  // 240 subscribers, every fourth with a filter that lets its team's events through (all of them here).
  // One at a time, so that streams[i] is clients[i]'s.
  const clients: Array<Awaited<ReturnType<typeof rawStream>>> = []
  for (let i = 0; i < 240; i++) {
    clients.push(await rawStream(url, `/events?topics=wide${i % 4 === 3 ? '&team=a' : ''}`))
    await until(() => dechunk(clients[i].text()).chunks === 1, 'the position frame')
  }
  const written = slowWrites(t, SLICED_WRITE_MS)
  const last = streams[streams.length - 1]
  const gone = streams[streams.length - 2]
  const closed = streams[streams.length - 3]
  let seen = -1
  // One event (eight slices): a macrotask queued behind it runs before it is done, and what it does is ordered.
  await app.eventHub.publish('wide', 'one', { tags: { team: 'a' } })
  await new Promise<void>(resolve => setImmediate(() => {
    seen = written.size
    // Published while the fan-out waits for its next slice, in two ticks: they go after it, to everyone.
    app.eventHub.publish('wide', 'two', { tags: { team: 'a' } }).catch(() => {})
    process.nextTick(() => { app.eventHub.publish('wide', 'two-b', { tags: { team: 'a' } }).catch(() => {}) })
    // One unsubscribed and one closed before it is reached: nothing more of the hub.
    app.eventHub.unsubscribe(gone)
    closed.close().catch(() => {})
    // A turn later (the fan-out still has slices to go), with 'two' held behind it: one more, and a subscriber
    // that it has not reached yet written to: what the hub holds for it goes first.
    setImmediate(() => {
      app.eventHub.publish('wide', 'extra', { tags: { team: 'a' } }).catch(() => {})
      last.message('direct').catch(() => {})
      resolve()
    })
  }))
  t.ok(seen > 0 && seen < 240, `the loop turned with ${seen} of 240 written`)
  // Then a tick of several events, published in one tick: the same through the other path.
  const ids = await Promise.all(['three', 'four', 'five'].map(data => app.eventHub.publish('wide', data, { tags: { team: 'a' } })))
  await until(() => clients.slice(0, 237).every(client => dataOf(client).length === 7) && dataOf(clients[239]).length === 8, 'every event', 10_000)
  const expected = ['one', 'two', 'two-b', 'extra', 'three', 'four', 'five']
  t.ok(clients.slice(0, 237).every(client => JSON.stringify(dataOf(client)) === JSON.stringify(expected)), 'every other subscriber: each event once, in order')
  t.same(dataOf(clients[239]), ['one', 'two', 'two-b', 'extra', 'direct', 'three', 'four', 'five'], 'the written one: the held events first')
  t.same(dataOf(clients[238]), [], 'the unsubscribed one: nothing of the hub')
  t.same(dataOf(clients[237]), ['one', 'two'], 'the closed one: what the hub held for it when it closed, then nothing')
  t.match(dechunk(clients[0].text()).body, `id: ${ids[2]}\ndata: five`)
  t.equal(app.eventHub.stats().subscribers.wide, 238)
  for (const client of clients) client.socket.destroy()
})

t.test('a fan-out whose slice ends at its last subscriber leaves nothing behind', async t => {
  const { app, url } = await hubApp(t)
  // 32 subscribers (one look at the clock): the slice is over exactly when they are done.
  const clients: Array<Awaited<ReturnType<typeof rawStream>>> = []
  for (let i = 0; i < 32; i++) clients.push(await rawStream(url, '/events?topics=exact'))
  await until(() => clients.every(client => dechunk(client.text()).chunks === 1), 'the position frames')
  slowWrites(t, SLICED_WRITE_MS)
  await app.eventHub.publish('exact', 'one')
  await app.eventHub.publish('exact', 'two')
  await until(() => clients.every(client => dataOf(client).length === 2), 'both events')
  t.ok(clients.every(client => dataOf(client).join() === 'one,two'))
  for (const client of clients) client.socket.destroy()
})

t.test('one tick held behind a fan-out goes out when it ends', async t => {
  const { app, url } = await hubApp(t)
  // 96 subscribers: three slices of 32, the last two in the next turns of the event loop.
  const clients: Array<Awaited<ReturnType<typeof rawStream>>> = []
  for (let i = 0; i < 96; i++) clients.push(await rawStream(url, '/events?topics=held'))
  await until(() => clients.every(client => dechunk(client.text()).chunks === 1), 'the position frames')
  const written = slowWrites(t, SLICED_WRITE_MS)
  await app.eventHub.publish('held', 'one')
  const seen: number[] = []
  // After the first slice: one tick of two events, then a look a turn later, with the second slice written.
  await new Promise<void>(resolve => setImmediate(() => {
    seen.push(written.size)
    written.clear()
    app.eventHub.publish('held', 'two').catch(() => {})
    app.eventHub.publish('held', 'three').catch(() => {})
    setImmediate(() => {
      seen.push(written.size)
      resolve()
    })
  }))
  t.same(seen, [32, 32], 'a slice a turn, the held tick written to nobody meanwhile')
  await until(() => clients.every(client => dataOf(client).length === 3), 'every event')
  t.ok(clients.every(client => dataOf(client).join() === 'one,two,three'), 'each subscriber: one, then the held tick')
  for (const client of clients) client.socket.destroy()
})
