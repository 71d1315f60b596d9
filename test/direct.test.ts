// The direct path: an encoded frame written to an idle HTTP/1.1 stream goes to the socket as one ready-made chunk.
// Every guarantee of the ordinary path must hold on it.
import { once } from 'node:events'
import http2 from 'node:http2'
import net from 'node:net'
import t from 'tap'
import { encodeMessage, injectEventStream, type EventStream } from '../index.js'
import { build, captureLogs, get, isPending, listen, readAll, readUntil, tick, until } from './helpers.js'

const KiB = 1024

/** Counts the socket writes of HTTP responses that carry `marker`, and whether they came through the response. */
function spySocketWrites (t: Parameters<typeof build>[0], marker: string): { direct: number } {
  const counts = { direct: 0 }
  const write = net.Socket.prototype.write
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    if (Buffer.isBuffer(chunk) && chunk.includes(marker) && /^[0-9a-f]+\r\n/.test(chunk.toString('latin1', 0, 10))) counts.direct++
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof write
  t.teardown(() => { net.Socket.prototype.write = write })
  return counts
}

/** A raw HTTP/1.1 client on one keep-alive connection. */
async function rawClient (url: string): Promise<{ socket: net.Socket, read: (until: string) => Promise<string> }> {
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => { received += chunk })
  return {
    socket,
    read: async marker => {
      await until(() => received.includes(marker), JSON.stringify(marker))
      const at = received.indexOf(marker) + marker.length
      const text = received.slice(0, at)
      received = received.slice(at)
      return text
    }
  }
}

t.test('hub events go to an idle stream as one socket write each; close() ends the body with a valid terminator; the connection serves the next request, byte-exact', async t => {
  const app = await build(t, { heartbeat: false })
  let stream: EventStream | undefined
  app.get('/events', (_request, reply) => {
    stream = reply.sse()
    app.eventHub.subscribe(stream, 'news')
  })
  app.get('/next', async () => 'next!')
  const counts = spySocketWrites(t, 'direct-')
  const client = await rawClient(await listen(app))
  client.socket.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n')
  const head = await client.read('\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(head, /\r\ntransfer-encoding: chunked\r\n/i)
  await until(() => app.eventHub.stats().subscribers.news === 1, 'the subscription')
  const position = await client.read('\n\r\n')
  t.match(position, /^[0-9a-f]+\r\nid: \d+\n\n\r\n$/, 'the position frame, one chunk')
  const first = await app.eventHub.publish('news', 'direct-1')
  await tick()
  const second = await app.eventHub.publish('news', 'direct-2')
  const frames = [`id: ${first}\ndata: direct-1\n\n`, `id: ${second}\ndata: direct-2\n\n`]
  const expected = frames.map(frame => `${frame.length.toString(16)}\r\n${frame}\r\n`).join('')
  t.equal(await client.read('direct-2\n\n\r\n'), expected, 'each event one chunk, exactly')
  t.equal(counts.direct, 2, 'each in one socket write of its ready-made chunk')
  await stream?.close()
  t.equal(await client.read('0\r\n\r\n'), '0\r\n\r\n', 'the terminating chunk, nothing else')
  client.socket.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n')
  const next = await client.read('next!')
  t.match(next, /^HTTP\/1\.1 200 OK\r\n[^]*\r\ncontent-length: 5\r\n[^]*\r\n\r\nnext!$/i, 'the keep-alive connection serves the next request')
  client.socket.destroy()
})

t.test('order: an encoded frame behind frames of the same tick, or behind a queue, waits its turn', async t => {
  const app = await build(t, { heartbeat: false })
  const opened = new Promise<EventStream>(resolve => { app.get('/', (_request, reply) => { resolve(reply.sse()) }) })
  const counts = spySocketWrites(t, 'ordered')
  const response = await get(`${await listen(app)}/`)
  const stream = await opened
  stream.message('text first')
  stream.write(encodeMessage('ordered second'))
  stream.message('text third')
  t.equal(await readUntil(response, 'third\n\n'), 'data: text first\n\ndata: ordered second\n\ndata: text third\n\n')
  t.equal(counts.direct, 0, 'a frame behind a batch joins the batch')
  response.destroy()
})

t.test('order: frames queued behind a full socket go first, then the encoded one', async t => {
  const app = await build(t, { heartbeat: false })
  const opened = new Promise<EventStream>(resolve => { app.get('/', (_request, reply) => { resolve(reply.sse()) }) })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  const stream = await opened
  const big = encodeMessage('z'.repeat(64 * KiB))
  let sent = 0
  // Direct writes until the socket is full: the first that must wait is queued.
  for (;;) {
    sent++
    const write = stream.write(big)
    if (await isPending(write)) break
  }
  const last = stream.write(encodeMessage('the last'))
  t.equal(await isPending(last), true, 'behind the queue, not straight to the socket')
  const body = readUntil(response, 'the last\n\n')
  response.resume()
  const text = await body
  t.equal(text.split('data: z').length - 1, sent, 'every big frame before it')
  t.ok(text.endsWith('data: the last\n\n'))
  t.equal(await last, true)
  response.destroy()
})

t.test('the bound counts what waits in the socket after direct writes: a slow client is cut off', async t => {
  const { logger, lines } = captureLogs()
  const maxBufferedBytes = 256 * KiB
  const app = await build(t, { maxBufferedBytes, heartbeat: false }, { logger })
  const result = new Promise<{ held: number, outcomes: boolean[] }>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      const frame = encodeMessage('y'.repeat(16 * KiB))
      const writes: Array<Promise<boolean>> = []
      let held = 0
      while (!stream.closed) {
        writes.push(stream.write(frame))
        held = Math.max(held, reply.raw.writableLength)
        await tick()
      }
      resolve({ held, outcomes: await Promise.all(writes) })
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  const { held, outcomes } = await result
  t.equal(outcomes.at(-1), false, 'the write that crossed the bound was refused')
  t.ok(held <= maxBufferedBytes + 16 * KiB + 64, `the socket held at most the bound and one frame (${held} bytes)`)
  t.ok(lines.some(line => line.msg.includes('too slow')), 'the cut-off was logged')
  t.equal(app.eventHub.stats().cutOff, 1)
  response.destroy()
})

t.test('a single frame larger than maxBufferedBytes still goes into an idle stream, on either path; a second one waiting behind it does not', async t => {
  const app = await build(t, { maxBufferedBytes: 1024, heartbeat: false })
  const big = 'b'.repeat(8 * KiB)
  const results = new Promise<boolean[]>(resolve => {
    app.get('/text', async (_request, reply) => {
      const stream = reply.sse()
      resolve([await stream.message(big), await stream.write(encodeMessage(big))])
      await stream.close()
    })
  })
  const paused = new Promise<{ first: boolean, second: boolean, closed: boolean }>(resolve => {
    app.get('/paused', async (_request, reply) => {
      const stream = reply.sse()
      const frame = encodeMessage('p'.repeat(4 * 1024 * KiB))
      const first = await stream.write(frame)
      const second = await stream.write(frame)
      resolve({ first, second, closed: stream.closed })
    })
  })
  const url = await listen(app)
  const body = await readAll(await get(`${url}/text`))
  t.same(await results, [true, true])
  t.equal(body, `data: ${big}\n\ndata: ${big}\n\n`, 'both arrived whole')
  const response = await get(`${url}/paused`)
  response.pause()
  t.same(await paused, { first: true, second: false, closed: true }, 'one frame into the idle stream; the next crosses the bound')
  response.destroy()
})

t.test('shutdown after direct writes: the reconnect hint and a clean end of the body', async t => {
  const app = await build(t, { heartbeat: false, reconnectWindow: [100, 100] })
  app.get('/events', (_request, reply) => { app.eventHub.subscribe(reply.sse(), 'a') })
  const response = await get(`${await listen(app)}/events`)
  await until(() => app.eventHub.stats().subscribers.a === 1, 'the subscription')
  const id = await app.eventHub.publish('a', 'before shutdown')
  const body = readAll(response)
  await app.close()
  t.match(await body, new RegExp(`^id: \\d+\\n\\nid: ${id}\\ndata: before shutdown\\n\\nretry: 100\\n\\n$`))
  t.equal(response.complete, true, 'ended with the terminating chunk')
})

t.test('heartbeats still reach a stream that took direct writes', async t => {
  const app = await build(t, { heartbeat: 50 })
  const opened = new Promise<EventStream>(resolve => { app.get('/', (_request, reply) => { resolve(reply.sse()) }) })
  const response = await get(`${await listen(app)}/`)
  const stream = await opened
  stream.write(encodeMessage('direct'))
  t.equal(await readUntil(response, ': \n\n'), 'data: direct\n\n: \n\n', 'the event, then a heartbeat once idle')
  response.destroy()
})

t.test('HTTP/2 keeps the ordinary path', async t => {
  const app = await build(t, { heartbeat: false }, { http2: true })
  app.get('/events', (_request, reply) => { app.eventHub.subscribe(reply.sse(), 'a') })
  const counts = spySocketWrites(t, 'over h2')
  const session = http2.connect(await listen(app))
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/events' })
  await until(() => app.eventHub.stats().subscribers.a === 1, 'the subscription')
  const id = await app.eventHub.publish('a', 'over h2')
  t.match(await readUntil(request, 'over h2\n\n'), new RegExp(`id: ${id}\\ndata: over h2\\n\\n$`))
  t.equal(counts.direct, 0)
  request.close()
})

t.test('app.inject() keeps the ordinary path: its response has no real socket', async t => {
  const app = await build(t, { heartbeat: false })
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    stream.write(encodeMessage('one'))
    setTimeout(() => {
      stream.write(encodeMessage('two'))
      stream.close()
    }, 10)
  })
  const events = []
  for await (const event of await injectEventStream(app, '/')) events.push(event.data)
  t.same(events, ['one', 'two'])
})
