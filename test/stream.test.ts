import t from 'tap'
import { encodeMessage, type EncodedMessage, type EventStream } from '../index.js'
import { build, captureLogs, fillSocket, get, isPending, listen, readAll, tick, until } from './helpers.js'

const KiB = 1024

t.test('FIFO: frames never interleave, whatever mix of awaited and unawaited callers', async t => {
  const app = await build(t)
  const producers = 3
  const perProducer = 400
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    // Frames are about 3 KiB so that the socket fills and the queue is exercised.
    const pad = '.'.repeat(3 * KiB)
    await Promise.all(Array.from({ length: producers }, async (_, p) => {
      for (let i = 0; i < perProducer; i++) {
        const write = stream.message(`${p}:${i}\n${pad}`, { event: `p${p}` })
        if (i % 3 !== 0) await write
      }
    }))
    await stream.close()
  })
  const response = await get(`${await listen(app)}/`)
  // Read slowly: pause the response now and then so the server's socket backs up.
  response.on('data', () => {
    response.pause()
    setTimeout(() => response.resume(), 1)
  })
  const body = await readAll(response)
  const frames = body.split('\n\n').filter(frame => frame !== '')
  t.equal(frames.length, producers * perProducer)
  const next = new Array(producers).fill(0)
  let intact = 0
  for (const frame of frames) {
    const match = /^event: p(\d)\ndata: (\d):(\d+)\ndata: \.+$/.exec(frame)
    if (match === null || match[1] !== match[2]) break
    const p = Number(match[1])
    if (Number(match[3]) !== next[p]) break
    next[p]++
    intact++
  }
  t.equal(intact, frames.length, 'every frame whole and in each producer\'s order')
})

t.test('while the socket is full, a write waits its turn and resolves true once handed over', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * KiB })
  const done = new Promise<void>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      const { waiting, sent } = await fillSocket(stream)
      const after = stream.message('after', { id: 'last' })
      t.equal(await isPending(after), true, 'a later write waits behind it')
      response.resume()
      t.equal(await waiting, true)
      t.equal(await after, true)
      t.ok(sent > 1)
      await stream.close()
      resolve()
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  await done
  const body = await readAll(response)
  t.ok(body.endsWith('id: last\ndata: after\n\n'), 'the waiting write arrives last')
})

t.test('an awaited write never hangs: the drain wait ends when the client leaves', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * KiB })
  let stream: EventStream | undefined
  // An object, not the promise itself: resolving with a promise would wait for it.
  const filled = new Promise<{ waiting: Promise<boolean> }>(resolve => {
    app.get('/', async (_request, reply) => {
      stream = reply.sse()
      resolve(await fillSocket(stream))
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  const { waiting } = await filled
  response.destroy()
  t.equal(await waiting, false, 'the pending write resolves false')
  t.equal(stream?.closed, true)
  t.equal(stream?.signal.aborted, true)
  t.equal(await stream?.message('gone'), false)
  t.equal(app.openEventStreams, 0)
})

t.test('past maxBufferedBytes a slow client is cut off, its writes resolve false, and a warning names the request', async t => {
  const { logger, lines } = captureLogs()
  const maxBufferedBytes = 256 * KiB
  const app = await build(t, { maxBufferedBytes }, { logger })
  const result = new Promise<{ pending: Array<Promise<boolean>>, held: number, late: boolean[] }>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      const chunk = 'y'.repeat(16 * KiB)
      const pending: Array<Promise<boolean>> = []
      let held = 0
      // Fire and forget, as a careless producer would: the bound must hold without the caller's help.
      while (!stream.closed) {
        pending.push(stream.message(chunk))
        held = Math.max(held, reply.raw.writableLength)
        await tick()
      }
      const late = await Promise.all(Array.from({ length: 1000 }, () => stream.message(chunk)))
      resolve({ pending, held, late })
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  const { pending, held, late } = await result
  const outcomes = await Promise.all(pending)
  t.equal(outcomes.at(-1), false, 'the write that crossed the bound was refused')
  t.ok(outcomes.filter(ok => !ok).length >= 1)
  t.ok(held <= maxBufferedBytes, `the socket never held more than the bound (${held} bytes)`)
  t.ok(late.every(ok => !ok), 'writes after the cut-off resolve false and queue nothing')
  const warning = lines.find(line => line.msg.includes('too slow'))
  t.ok(warning, 'a warning was logged')
  t.equal(warning?.level, 40)
  t.match(warning, { reqId: /\S/, maxBufferedBytes })
  t.equal(app.openEventStreams, 0)
  response.destroy()
})

t.test('close() hands every queued frame to the socket, then ends the response', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * KiB })
  let closing: Promise<void> | undefined
  const handedOver = new Promise<boolean[]>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      const { waiting } = await fillSocket(stream)
      const queued = [stream.message('q1'), stream.message('q2'), stream.comment('q3')]
      closing = stream.close()
      resolve(await Promise.all([waiting, ...queued]))
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  t.same(await handedOver, [true, true, true, true], 'queued writes resolve true')
  const body = await readAll(response)
  await closing
  t.ok(body.endsWith('data: q1\n\ndata: q2\n\n: q3\n\n'), 'queued frames arrive, in order, before the end')
})

t.test('close() does not wait forever on a client that stopped reading', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * KiB })
  const closed = new Promise<boolean>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      await fillSocket(stream)
      await stream.close()
      resolve(stream.closed)
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  t.equal(await closed, true, 'close() resolved although the client never read')
  response.destroy()
})

t.test('a response error ends the stream', async t => {
  const { logger, lines } = captureLogs('debug')
  const app = await build(t, {}, { logger })
  const opened = new Promise<{ stream: EventStream, raw: NodeJS.EventEmitter }>(resolve => {
    app.get('/', (_request, reply) => { resolve({ stream: reply.sse(), raw: reply.raw }) })
  })
  const response = await get(`${await listen(app)}/`)
  const { stream, raw } = await opened
  raw.emit('error', new Error('broken pipe'))
  t.equal(stream.closed, true)
  t.equal(stream.signal.aborted, true)
  t.equal(await stream.message('x'), false)
  response.on('error', () => {})
  await new Promise(resolve => response.once('close', resolve))
  t.equal(response.complete, false, 'the client saw the connection cut')
  await until(() => lines.some(line => line.msg === 'event stream response failed'), 'the debug line')
})

t.test('write(): one encoded frame goes to many streams as is; anything but bytes throws', async t => {
  const app = await build(t)
  const frame = encodeMessage('shared', { id: 1, event: 'news' })
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    t.throws(() => stream.write('text' as unknown as EncodedMessage), { code: 'FST_SSE_INVALID_FIELD' })
    t.equal(await stream.write(frame), true)
    await stream.close()
    t.equal(await stream.write(frame), false)
  })
  const bodies = await Promise.all([app.inject('/'), app.inject('/'), app.inject('/')])
  t.same(bodies.map(response => response.body), Array(3).fill('id: 1\nevent: news\ndata: shared\n\n'))
})

t.test('frames written in the same tick leave the socket in one write', async t => {
  const app = await build(t)
  const calls = new Promise<{ writev: number, write: number, chunks: number }>(resolve => {
    app.get('/', (_request, reply) => {
      const stream = reply.sse()
      const socket = reply.raw.socket as unknown as { _writev: (...args: any[]) => void, _write: (...args: any[]) => void }
      const counts = { writev: 0, write: 0, chunks: 0 }
      const { _writev: writev, _write: write } = socket
      socket._writev = function (chunks: unknown[], ...rest: unknown[]) { counts.writev++; counts.chunks += chunks.length; return writev.call(this, chunks, ...rest) }
      socket._write = function (...args: unknown[]) { counts.write++; return write.apply(this, args) }
      for (let i = 0; i < 100; i++) stream.message(`event ${i}`)
      setImmediate(() => { resolve({ ...counts }); stream.close() })
    })
  })
  const response = await get(`${await listen(app)}/`)
  const body = await readAll(response)
  const { writev, write, chunks } = await calls
  t.equal(body.split('\n\n').length - 1, 100)
  t.equal(writev + write, 1, 'one socket write for the 100 frames')
  t.ok(chunks <= 4, `as one HTTP chunk (${chunks} buffers: size, CRLF, frames, CRLF)`)
})

t.test('text and byte frames written in one tick keep their order', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    stream.message('text one')
    stream.write(encodeMessage('bytes'))
    stream.message(new TextEncoder().encode('byte data'))
    stream.comment('é')
    await stream.close()
  })
  t.equal((await app.inject('/')).body, 'data: text one\n\ndata: bytes\n\ndata: byte data\n\n: é\n\n')
})

t.test('the bound counts bytes, not characters, for text waiting behind a full socket', async t => {
  const maxBufferedBytes = 1024 * KiB
  const app = await build(t, { maxBufferedBytes })
  const outcome = new Promise<{ written: boolean, closed: boolean }>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      await fillSocket(stream)
      // 400,000 characters, under the bound; 1,200,000 bytes of UTF-8, over it.
      const written = await stream.message('漢'.repeat(400_000))
      resolve({ written, closed: stream.closed })
    })
  })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  t.same(await outcome, { written: false, closed: true })
  response.destroy()
})
