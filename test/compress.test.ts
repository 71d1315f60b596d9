// Compressed streams: negotiation, each write decodable at once, clean ends, the bound on compressed bytes, HTTP/2,
// inject, the hub, and real clients (undici's fetch, the eventsource package, curl --compressed).
import cors from '@fastify/cors'
import { EventSource } from 'eventsource'
import Fastify from 'fastify'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http2 from 'node:http2'
import type { Readable } from 'node:stream'
import { promisify } from 'node:util'
import { constants, createGunzip, createInflate, deflateSync, gunzipSync, inflateSync } from 'node:zlib'
import t from 'tap'
import fastifyEventStream, { encodeComment, EventStreamParser, injectEventStream, type EventStream, type ParsedEvent } from '../index.js'
import { adler32, negotiateEncoding, resolveCompression, StreamEncoder } from '../lib/compress.js'
import { build, captureLogs, get, listen, until } from './helpers.js'

const run = promisify(execFile)

/** A response body decoded by its Content-Encoding and parsed: the events as they become readable. */
function decodeEvents (response: Readable & { headers: Record<string, unknown> }): { events: ParsedEvent[], ended: Promise<string | undefined> } {
  const encoding = response.headers['content-encoding']
  const decoded: Readable = encoding === 'gzip'
    ? response.pipe(createGunzip({ finishFlush: constants.Z_SYNC_FLUSH }))
    : encoding === 'deflate' ? response.pipe(createInflate({ finishFlush: constants.Z_SYNC_FLUSH })) : response
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser(event => events.push(event))
  decoded.on('data', (chunk: Buffer) => parser.feed(chunk.toString()))
  // Resolves with the decoder's error, if any, once the body ended: a clean end has none.
  const ended = new Promise<string | undefined>(resolve => {
    decoded.on('end', () => resolve(undefined))
    decoded.on('error', err => resolve(err.message))
  })
  return { events, ended }
}

t.test('Accept-Encoding is negotiated by q-value, then by the server\'s order; identity when nothing offered is accepted', async t => {
  const both = ['gzip', 'deflate'] as const
  t.equal(negotiateEncoding(undefined, both), undefined, 'no header: identity')
  t.equal(negotiateEncoding('', both), undefined)
  t.equal(negotiateEncoding('gzip, deflate, br', both), 'gzip')
  t.equal(negotiateEncoding('deflate, gzip', both), 'gzip', 'equal q: the server\'s order')
  t.equal(negotiateEncoding('gzip;q=0.5, deflate', both), 'deflate')
  t.equal(negotiateEncoding('GZIP;Q=0.9, deflate;q=0.8', both), 'gzip', 'names and parameters are case-insensitive')
  t.equal(negotiateEncoding('br', both), undefined, 'only a coding not offered')
  t.equal(negotiateEncoding('gzip;q=0, deflate;q=0', both), undefined, 'every offered coding refused')
  t.equal(negotiateEncoding('identity;q=0, gzip;q=0', both), undefined, 'identity refused too: still identity, the one answer every client reads')
  t.equal(negotiateEncoding('*', both), 'gzip')
  t.equal(negotiateEncoding('*;q=0.1, gzip;q=0', both), 'deflate', 'a named coding is not covered by *')
  t.equal(negotiateEncoding('*;q=0', both), undefined)
  t.equal(negotiateEncoding('x-gzip', both), 'gzip', 'x-gzip is gzip')
  t.equal(negotiateEncoding('gzip;q=2, deflate;q=0.1', both), 'deflate', 'an invalid q-value counts as 0')
  t.equal(negotiateEncoding('gzip;q=, deflate;q=0.001', both), 'deflate')
  t.equal(negotiateEncoding(' , ;q=1, deflate ; q=1.000', both), 'deflate', 'empty members are skipped')
  t.equal(negotiateEncoding(['br', 'deflate'], both), 'deflate', 'a header sent twice')
  t.equal(negotiateEncoding('gzip;q, deflate;level=1', both), 'deflate', 'a q without a value counts as 0, other parameters are ignored')
  t.equal(negotiateEncoding('gzip, deflate', ['deflate', 'gzip']), 'deflate', 'the order the app chose')
})

t.test('options: bad compression settings throw FST_SSE_INVALID_OPTION, at registration and in sse() before the reply is taken', async t => {
  for (const compression of [1, 'gzip', null, { encodings: [] }, { encodings: ['br'] }, { encodings: ['gzip', 'gzip'] }, { encodings: 'gzip' },
    { level: 0 }, { level: 10 }, { level: 1.5 }, { window: 255 }, { window: 32769 }]) {
    const app = Fastify()
    app.register(fastifyEventStream, { compression: compression as never })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_SSE_INVALID_OPTION' }, JSON.stringify(compression))
    await app.close()
  }
  t.same(resolveCompression({ encodings: ['deflate'], level: 1, window: 256 }), { encodings: ['deflate'], level: 1, window: 256 })
  t.equal(resolveCompression(false), undefined)

  const app = await build(t)
  app.get('/', (_request, reply) => { reply.sse(200, { compression: { level: 42 } }) })
  const response = await app.inject('/')
  t.equal(response.statusCode, 500, 'the handler\'s error is answered as any other')
  t.equal(response.json().code, 'FST_SSE_INVALID_OPTION')
  t.match(response.json().message, /sse\(\) compression\.level/)
})

t.test('each write leaves the compressor whole: the client decodes every event before the next one is written', async t => {
  for (const encoding of ['gzip', 'deflate']) {
    const app = await build(t, { compression: true, heartbeat: false })
    let stream!: EventStream
    app.get('/', (_request, reply) => { stream = reply.sse() })
    const response = await get(`${await listen(app)}/`, { 'accept-encoding': encoding })
    t.equal(response.headers['content-encoding'], encoding)
    t.equal(response.headers.vary, 'Accept-Encoding')
    const { events, ended } = decodeEvents(response)
    for (let n = 1; n <= 5; n++) {
      await stream.send('tick', { n, text: 'the same words again and again '.repeat(n) }, { id: n })
      // Nothing more is written until this event is decoded on the client.
      await until(() => events.length === n, `${encoding}: event ${n} decoded`)
    }
    t.same(events.map(event => JSON.parse(event.data).n), [1, 2, 3, 4, 5], `${encoding}: in order`)
    await stream.close()
    t.equal(await ended, undefined, `${encoding}: the body ends cleanly (trailer and checksum right)`)
  }
})

t.test('identity for a client that accepts no offered coding; Vary names Accept-Encoding next to what CORS put there', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(cors, { origin: ['http://app.example', 'http://other.example'] })
  await app.register(fastifyEventStream, { compression: true, heartbeat: false })
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    stream.message('plain').then(() => stream.close())
  })
  const url = await listen(app)
  for (const headers of [{}, { 'accept-encoding': 'br' }, { 'accept-encoding': 'identity;q=0, gzip;q=0, deflate;q=0' }]) {
    const response = await get(`${url}/`, { ...headers, origin: 'http://app.example' })
    t.equal(response.headers['content-encoding'], undefined, `${JSON.stringify(headers)}: identity`)
    t.equal(response.headers.vary, 'Origin, Accept-Encoding')
    let body = ''
    for await (const chunk of response) body += chunk
    t.equal(body, 'data: plain\n\n')
  }
})

t.test('a Vary the route set already is kept: Accept-Encoding is not named twice, and * stays *', async t => {
  const app = await build(t, { compression: true, heartbeat: false })
  for (const [path, vary] of [['/named', 'accept-encoding'], ['/star', '*'], ['/list', ['Origin', 'Cookie']]] as const) {
    app.get(path, (_request, reply) => {
      reply.header('vary', vary)
      reply.sse().close()
    })
  }
  for (const [path, expected] of [['/named', 'accept-encoding'], ['/star', '*'], ['/list', 'Origin, Cookie, Accept-Encoding']]) {
    t.equal((await app.inject(path)).headers.vary, expected, path)
  }
})

t.test('a route overrides the plugin: off where the plugin compresses, on where it does not', async t => {
  const app = await build(t, { compression: true, heartbeat: false })
  const options = { compression: false }
  app.get('/plain', (_request, reply) => { reply.sse(200, options).close() })
  app.get('/default', (_request, reply) => { reply.sse().close() })
  const url = await listen(app)
  const plain = await get(`${url}/plain`, { 'accept-encoding': 'gzip' })
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers.vary, undefined, 'an uncompressed route does not vary')
  plain.resume()
  const compressed = await get(`${url}/default`, { 'accept-encoding': 'gzip' })
  t.equal(compressed.headers['content-encoding'], 'gzip')
  compressed.resume()

  const off = await build(t, { heartbeat: false })
  const settings = { compression: { encodings: ['deflate'] as const, level: 1, window: 512 } }
  off.get('/on', (_request, reply) => { reply.sse(200, settings).message('x') })
  off.get('/off', (_request, reply) => { reply.sse().close() })
  const offUrl = await listen(off)
  const on = await get(`${offUrl}/on`, { 'accept-encoding': 'gzip, deflate' })
  t.equal(on.headers['content-encoding'], 'deflate', 'the route\'s own codings')
  on.destroy()
  const none = await get(`${offUrl}/off`, { 'accept-encoding': 'gzip' })
  t.equal(none.headers['content-encoding'], undefined, 'off by default')
  none.resume()
})

t.test('close, shutdown (with its reconnect hint) and maxStreamAge end a compressed body cleanly', async t => {
  const app = await build(t, { compression: true, heartbeat: false, reconnectWindow: [1000, 1000], maxStreamAge: 300, maxStreamAgeJitter: 0 })
  app.get('/', (_request, reply) => { reply.sse().message('hello', { id: 1 }) })
  const url = await listen(app)

  const aged = await get(`${url}/`, { 'accept-encoding': 'gzip' })
  const agedBody = decodeEvents(aged)
  t.equal(await agedBody.ended, undefined, 'maxStreamAge: a clean end')
  t.same(agedBody.events.map(event => event.data), ['hello'], 'the event, then the end (the reconnect hint is a retry field)')

  const shut = await get(`${url}/`, { 'accept-encoding': 'deflate' })
  const shutBody = decodeEvents(shut)
  await until(() => shutBody.events.length === 1, 'the event arrives')
  await app.close()
  t.equal(await shutBody.ended, undefined, 'shutdown: a clean end')
})

t.test('the retry hint and the reconnect hint are compressed with the rest; the hint reaches the decoded stream', async t => {
  const app = await build(t, { compression: true, heartbeat: false, retry: 2500, reconnectWindow: [700, 700] })
  app.get('/', (_request, reply) => { reply.sse().message('x') })
  const response = await get(`${await listen(app)}/`, { 'accept-encoding': 'gzip' })
  const chunks: Buffer[] = []
  response.on('data', (chunk: Buffer) => chunks.push(chunk))
  await until(() => chunks.length > 0 && gunzipSync(Buffer.concat(chunks), { finishFlush: constants.Z_SYNC_FLUSH }).toString().includes('data: x'), 'the event')
  await app.close()
  await once(response, 'end')
  t.equal(gunzipSync(Buffer.concat(chunks)).toString(), 'retry: 2500\n\ndata: x\n\nretry: 700\n\n', 'a whole gzip body, checksum included')
})

t.test('heartbeats are compressed writes of their own', async t => {
  const app = await build(t, { compression: true, heartbeat: 40 })
  app.get('/', (_request, reply) => { reply.sse() })
  const response = await get(`${await listen(app)}/`, { 'accept-encoding': 'gzip' })
  const chunks: Buffer[] = []
  response.on('data', (chunk: Buffer) => chunks.push(chunk))
  await until(() => chunks.length >= 3, 'three heartbeats')
  const heartbeat = encodeComment('').toString()
  const decoded = gunzipSync(Buffer.concat(chunks), { finishFlush: constants.Z_SYNC_FLUSH }).toString()
  t.ok(decoded.length >= 3 * heartbeat.length && decoded === heartbeat.repeat(decoded.length / heartbeat.length), JSON.stringify(decoded))
  response.destroy()
})

t.test('maxBufferedBytes counts compressed bytes at the socket: a stalled client is cut off, a reading one gets everything', async t => {
  const logs = captureLogs('warn')
  const app = Fastify({ logger: logs.logger })
  t.teardown(() => app.close())
  await app.register(fastifyEventStream, { compression: true, heartbeat: false, maxBufferedBytes: 64 * 1024 })
  const streams: EventStream[] = []
  app.get('/', (_request, reply) => { streams.push(reply.sse()) })
  const url = await listen(app)
  const reader = await get(`${url}/`, { 'accept-encoding': 'gzip' })
  const readerBody = decodeEvents(reader)
  const stalled = await get(`${url}/`, { 'accept-encoding': 'gzip' })
  stalled.pause()
  await until(() => streams.length === 2, 'both open')
  // Random text compresses badly: what waits for the stalled client grows past the bound (and the sockets' buffers).
  const noise = (n: number): string => `${n} ${randomBytes(12 * 1024).toString('base64')}`
  // One event per turn of the event loop, as events arrive: what a stream is sent in one tick waits in the response
  // until the socket gets it, so more than the bound in one tick cuts off any client, a reading one too.
  const turn = (): Promise<void> => new Promise(resolve => setImmediate(resolve))
  let sent = 0
  for (let n = 0; n < 3000 && !streams[1].closed; n++) {
    const writes = streams.map(stream => stream.message(noise(n), { id: n }))
    await writes[0]
    await turn()
    sent++
  }
  t.ok(streams[1].closed, `the stalled client was cut off (after ${sent} events)`)
  t.ok(logs.lines.some(line => /too slow/.test(line.msg)), 'logged as too slow')
  for (let n = sent; n < sent + 20; n++) {
    await streams[0].message(noise(n), { id: n })
    await turn()
  }
  await until(() => readerBody.events.length === sent + 20, 'the reading client decoded every event')
  t.same(readerBody.events.map(event => Number(event.id)), Array.from({ length: sent + 20 }, (_, i) => i))
  await streams[0].close()
  t.equal(await readerBody.ended, undefined)
  stalled.destroy()
})

t.test('HTTP/2: a compressed stream, decoded event by event, ending cleanly', async t => {
  const app = await build(t, { compression: true, heartbeat: false }, { http2: true })
  let stream!: EventStream
  app.get('/', (_request, reply) => { stream = reply.sse() })
  const url = await listen(app)
  const session = http2.connect(url)
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/', 'accept-encoding': 'gzip' })
  const [headers] = await once(request, 'response') as [http2.IncomingHttpHeaders]
  t.equal(headers['content-encoding'], 'gzip')
  const { events, ended } = decodeEvents(Object.assign(request as unknown as Readable, { headers }))
  for (let n = 1; n <= 3; n++) {
    await stream.message(`event ${n}`)
    await until(() => events.length === n, `event ${n}`)
  }
  await stream.close()
  t.equal(await ended, undefined)
})

t.test('app.inject(): identity unless asked; injectEventStream decodes what it is sent compressed', async t => {
  const app = await build(t, { compression: true, heartbeat: false })
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    stream.message('one', { id: 1 }).then(() => stream.message('two', { id: 2 })).then(() => stream.close())
  })
  const plain = await app.inject('/')
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.body, 'id: 1\ndata: one\n\nid: 2\ndata: two\n\n')
  for (const encoding of ['gzip', 'deflate']) {
    const injected = await injectEventStream(app, { url: '/', headers: { 'accept-encoding': encoding } })
    t.equal(injected.headers['content-encoding'], encoding)
    const data: string[] = []
    for await (const event of injected) data.push(event.data)
    t.same(data, ['one', 'two'], `${encoding}: decoded`)
  }
  const gzipped = await app.inject({ url: '/', headers: { 'accept-encoding': 'gzip' } })
  t.equal(gunzipSync(gzipped.rawPayload).toString(), 'id: 1\ndata: one\n\nid: 2\ndata: two\n\n')
})

t.test('the hub encodes each event once; each compressed subscriber gets every event in order, with replay', async t => {
  const app = await build(t, { compression: true, heartbeat: false })
  app.get('/', (_request, reply) => { app.eventHub.subscribe(reply.sse(), ['a', 'b']) })
  const url = await listen(app)
  const first = await app.eventHub.publish('a', 'before')
  await app.eventHub.publish('b', 'missed')
  const clients = await Promise.all([
    get(`${url}/`, { 'accept-encoding': 'gzip' }),
    get(`${url}/`, { 'accept-encoding': 'deflate' }),
    get(`${url}/`, { 'accept-encoding': 'gzip', 'last-event-id': first }),
    get(`${url}/`)
  ])
  const bodies = clients.map(decodeEvents)
  await until(() => app.eventHub.stats().subscribers.a === 4, 'subscribed')
  // A tick of many events (one frame per subscriber), then one event per tick.
  for (let n = 0; n < 50; n++) app.eventHub.publish(n % 2 === 0 ? 'a' : 'b', `burst ${n}`)
  for (let n = 0; n < 20; n++) await app.eventHub.publish('a', `single ${n}`)
  const expected = [...Array.from({ length: 50 }, (_, n) => `burst ${n}`), ...Array.from({ length: 20 }, (_, n) => `single ${n}`)]
  // Client 2 resumed after `first`: it gets the event it missed before the rest.
  const wanted = bodies.map((_body, i) => i === 2 ? ['missed', ...expected] : expected)
  await until(() => bodies.every((body, i) => body.events.length >= wanted[i].length), 'every event everywhere')
  for (const [i, body] of bodies.entries()) t.same(body.events.map(event => event.data), wanted[i], `client ${i}`)
  for (const client of clients) client.destroy()
})

const ALPHABET = Buffer.from('abcdefgh ij\n')

t.test('the encoder: many writes of every size, with small and large windows, make one valid gzip and zlib body', async t => {
  let seed = 42
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
  for (const window of [256, 4096, 32768]) {
    for (const encoding of ['gzip', 'deflate'] as const) {
      const encoder = new StreamEncoder(encoding, { encodings: [encoding], level: 6, window })
      const parts: Buffer[] = []
      const text: Buffer[] = []
      for (let i = 0; i < 300; i++) {
        const size = [1, 10, 100, 255, 256, 257, 1000, 5000, 40000][Math.floor(random() * 9)]
        const chunk = Buffer.allocUnsafe(size)
        for (let b = 0; b < size; b++) chunk[b] = ALPHABET[Math.floor(random() * ALPHABET.length)]
        text.push(chunk)
        parts.push(encoder.encode(chunk))
      }
      parts.push(encoder.finish())
      const body = Buffer.concat(parts)
      const decoded = encoding === 'gzip' ? gunzipSync(body) : inflateSync(body)
      t.ok(decoded.equals(Buffer.concat(text)), `${encoding}, window ${window}: ${body.length} bytes for ${decoded.length}`)
    }
  }
  const empty = new StreamEncoder('gzip', { encodings: ['gzip'], level: 6, window: 4096 })
  t.equal(gunzipSync(empty.finish()).length, 0, 'a body with no write is a valid empty gzip')
  t.equal(inflateSync(new StreamEncoder('deflate', { encodings: ['deflate'], level: 1, window: 256 }).finish()).length, 0)
  t.equal(adler32(Buffer.from('Wikipedia')), 0x11e60398, 'Adler-32 of the known example')
  t.equal(adler32(Buffer.alloc(100_000, 0xff)), inflateAdler(Buffer.alloc(100_000, 0xff)), 'Adler-32 across many blocks')
})

t.test('the encoder: a frame written to many streams in a tick is compressed once for those whose texts end the same; each body decodes byte-exact', async t => {
  const settings = { encodings: ['gzip', 'deflate'] as const, level: 6, window: 256 }
  const streams = ['gzip', 'gzip', 'deflate', 'gzip'].map(encoding => ({ encoder: new StreamEncoder(encoding as 'gzip' | 'deflate', { ...settings, encodings: [...settings.encodings] }), parts: [] as Buffer[], text: [] as Buffer[] }))
  const write = (stream: typeof streams[number], chunk: Buffer): Buffer => {
    const compressed = stream.encoder.encode(chunk)
    stream.parts.push(compressed)
    stream.text.push(chunk)
    return compressed
  }
  const frame = (i: number): Buffer => Buffer.from(`id: ${i}\ndata: {"price":${100 + i},"symbol":"ABC"}\n\n`)
  // The first write: each its own header, the same compressed data after it.
  const firsts = streams.map(stream => write(stream, frame(0)))
  t.ok(firsts.every(first => first.subarray(first.length - 20).equals(firsts[0].subarray(firsts[0].length - 20))), 'the first event compressed alike')
  for (let i = 1; i < 5; i++) {
    const outputs = streams.map(stream => write(stream, frame(i)))
    t.ok(outputs.every(output => output === outputs[0]), `event ${i}: one compressed buffer for all four (gzip and deflate alike)`)
  }
  // One stream gets a frame of its own: its text differs, so it compresses the next events for itself...
  write(streams[3], Buffer.from('data: only for the last one\n\n'))
  const diverged = streams.map(stream => write(stream, frame(5)))
  t.equal(diverged[1], diverged[0])
  t.not(diverged[3], diverged[0], 'a stream whose text ends otherwise compresses for itself')
  // ...until a window of shared text later, when its text ends as the others' do again.
  let i = 6
  for (let shared = 0; shared < 256; shared += frame(i).length, i++) streams.forEach(stream => write(stream, frame(i)))
  const rejoined = streams.map(stream => write(stream, frame(i)))
  t.equal(rejoined[3], rejoined[0], 'after a window of shared text it shares the compressed frames again')
  // The next tick: no step is kept, yet streams that share a history still compress once.
  await new Promise(resolve => setImmediate(resolve))
  const nextTick = streams.map(stream => write(stream, frame(i + 1)))
  t.ok(nextTick.every(output => output === nextTick[0]), 'the next tick: one compressed buffer for all four')
  for (const [n, stream] of streams.entries()) {
    stream.parts.push(stream.encoder.finish())
    const body = Buffer.concat(stream.parts)
    const decoded = stream.encoder.encoding === 'gzip' ? gunzipSync(body) : inflateSync(body)
    t.ok(decoded.equals(Buffer.concat(stream.text)), `stream ${n} (${stream.encoder.encoding}) decodes to exactly its text`)
  }
})

/** The Adler-32 that zlib writes for some bytes: the last four bytes of a zlib body. */
function inflateAdler (data: Buffer): number {
  const body = deflateSync(data)
  return body.readUInt32BE(body.length - 4)
}

t.test('real clients read compressed streams event by event: undici fetch, the eventsource package, curl --compressed', async t => {
  const app = await build(t, { compression: true, heartbeat: false })
  const streams: EventStream[] = []
  app.get('/', (_request, reply) => { streams.push(reply.sse()) })
  const url = await listen(app)

  // fetch (undici) sends Accept-Encoding: gzip, deflate, br itself and decodes.
  const response = await fetch(`${url}/`)
  t.equal(response.headers.get('content-encoding'), 'gzip')
  const reader = response.body!.getReader()
  await until(() => streams.length === 1, 'fetch connected')
  const decoder = new TextDecoder()
  for (let n = 1; n <= 3; n++) {
    await streams[0].message(`fetch ${n}`)
    let text = ''
    while (!text.endsWith('\n\n')) {
      const { value, done } = await reader.read()
      if (done === true) throw new Error(`the stream ended after ${JSON.stringify(text)}`)
      text += decoder.decode(value, { stream: true })
    }
    t.equal(text, `data: fetch ${n}\n\n`, `fetch: event ${n} read before the next is written`)
  }
  await reader.cancel()

  const source = new EventSource(`${url}/`)
  t.teardown(() => source.close())
  const received: string[] = []
  source.onmessage = event => { received.push(event.data) }
  await until(() => streams.length === 2, 'EventSource connected')
  for (let n = 1; n <= 3; n++) {
    await streams[1].message(`es ${n}`)
    await until(() => received.length === n, `eventsource: event ${n}`)
  }
  t.same(received, ['es 1', 'es 2', 'es 3'])
  source.close()

  const curl = run('curl', ['-sN', '--compressed', '-D', '-', `${url}/`])
  await until(() => streams.length === 3, 'curl connected')
  for (let n = 1; n <= 3; n++) await streams[2].message(`curl ${n}`)
  await streams[2].close()
  const { stdout } = await curl
  t.match(stdout, /content-encoding: (gzip|deflate)/i)
  t.ok(stdout.endsWith('data: curl 1\n\ndata: curl 2\n\ndata: curl 3\n\n'), 'curl decoded the whole body and found its end clean')
})
