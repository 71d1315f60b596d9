import { once } from 'node:events'
import { Readable } from 'node:stream'
import t from 'tap'
import { FST_SSE_INVALID_OPTION, FST_SSE_INVALID_SOURCE, injectEventStream, type EventStream, type ParsedEvent } from '../index.js'
import { build, captureLogs, get, listen, readAll, readUntil, tick, until } from './helpers.js'

async function collect (events: AsyncIterable<ParsedEvent>): Promise<Array<Partial<ParsedEvent>>> {
  const all: Array<Partial<ParsedEvent>> = []
  for await (const { type, data, id } of events) all.push(id === undefined ? { type, data } : { type, data, id })
  return all
}

interface Counter {
  source: AsyncGenerator<string>
  pulled: number
  finished: boolean
  finishedPromise: Promise<void>
}

/** An endless source that counts what was pulled from it and whether its finally block ran. */
function counter (size = 10): Counter {
  let resolveFinished!: () => void
  const state = {
    pulled: 0,
    finished: false,
    finishedPromise: new Promise<void>(resolve => { resolveFinished = resolve })
  }
  const source = (async function * () {
    try {
      for (;;) {
        state.pulled++
        yield `${state.pulled}:${'.'.repeat(size)}`
      }
    } finally {
      state.finished = true
      resolveFinished()
    }
  })()
  return Object.assign(state, { source })
}

t.test('every item shape becomes an event, in order; resolves true at the end and the stream stays open', async t => {
  const app = await build(t)
  let result: boolean | undefined
  app.get('/', async (_request, reply) => {
    const stream = reply.sse<{ tick: { n: number } }>()
    result = await stream.consume((async function * () {
      yield 'plain\ntwo lines'
      yield new TextEncoder().encode('bytes')
      yield { data: 'object', id: 7, event: 'named', retry: 100 }
      yield { event: 'tick', json: { n: 1 }, id: 8 }
    })())
    await stream.consume(['from', 'an array'])
    await stream.message('after')
    await stream.close()
  })
  t.same(await collect(await injectEventStream(app, '/')), [
    { type: 'message', data: 'plain\ntwo lines' },
    { type: 'message', data: 'bytes' },
    { type: 'named', data: 'object', id: '7' },
    { type: 'tick', data: '{"n":1}', id: '8' },
    { type: 'message', data: 'from' },
    { type: 'message', data: 'an array' },
    { type: 'message', data: 'after' }
  ])
  t.equal(result, true)
})

t.test('Node Readables: object mode and byte mode', async t => {
  const app = await build(t)
  app.get('/objects', async (_request, reply) => {
    const stream = reply.sse()
    await stream.consume(Readable.from([{ data: 'a', id: 1 }, { data: 'b', event: 'x' }]))
    await stream.close()
  })
  app.get('/bytes', async (_request, reply) => {
    const stream = reply.sse()
    await stream.consume(new Readable({ read () { this.push(Buffer.from('chunk')); this.push(null) } }))
    await stream.close()
  })
  t.same(await collect(await injectEventStream(app, '/objects')), [{ type: 'message', data: 'a', id: '1' }, { type: 'x', data: 'b' }])
  t.same(await collect(await injectEventStream(app, '/bytes')), [{ type: 'message', data: 'chunk' }])
})

t.test('what is not a source throws FST_SSE_INVALID_SOURCE; a bad stallTimeout FST_SSE_INVALID_OPTION', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    for (const source of ['text', new Uint8Array(2), 42, null, undefined, {}]) {
      t.throws(() => stream.consume(source as unknown as string[]), FST_SSE_INVALID_SOURCE)
    }
    for (const stallTimeout of [0, -1, 1.5, NaN]) {
      t.throws(() => stream.consume([], { stallTimeout }), FST_SSE_INVALID_OPTION)
    }
    await stream.message('still usable')
    await stream.close()
  })
  t.same(await collect(await injectEventStream(app, '/')), [{ type: 'message', data: 'still usable' }])
})

t.test('backpressure: a client that does not read stops the pulling; reading again resumes it', async t => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * 1024 })
  const source = counter(16 * 1024)
  app.get('/', (_request, reply) => { reply.sse().consume(source.source) })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  // Wait until pulling stops: nothing more is pulled over several turns of the event loop.
  let last = -1
  await until(() => {
    const stable = source.pulled === last
    last = source.pulled
    return stable && last > 0
  }, 'the source to stop being pulled')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(source.pulled, last, 'no item pulled while the client reads nothing')
  t.ok(last * 16 * 1024 < 32 * 1024 * 1024, `memory held stays small: ${last} items of 16 KiB pulled`)
  response.resume()
  await until(() => source.pulled > last + 100, 'pulling to resume')
  response.destroy()
  await source.finishedPromise
  t.equal(source.finished, true)
})

t.test('the source is stopped and its finally runs when the client leaves, on close() and on shutdown', async t => {
  for (const how of ['disconnect', 'close', 'shutdown'] as const) {
    const app = await build(t)
    const source = counter()
    let stream: EventStream | undefined
    let result: Promise<boolean> | undefined
    app.get('/', (_request, reply) => {
      stream = reply.sse()
      result = stream.consume(source.source)
    })
    const response = await get(`${await listen(app)}/`)
    await readUntil(response, '\n\n')
    if (how === 'disconnect') response.destroy()
    else if (how === 'close') await stream?.close()
    else await app.close()
    await source.finishedPromise
    t.equal(await result, false, `${how}: consume() resolved false`)
    t.equal(source.finished, true, `${how}: the source's finally ran`)
    response.destroy()
  }
})

t.test('a Readable source is destroyed when the stream ends', async t => {
  const app = await build(t)
  let readable: Readable | undefined
  app.get('/', (_request, reply) => {
    let n = 0
    readable = new Readable({ objectMode: true, read () { setTimeout(() => this.push(`item ${n++}`), 1) } })
    reply.sse().consume(readable)
  })
  const response = await get(`${await listen(app)}/`)
  await readUntil(response, 'item 2')
  response.destroy()
  await once(readable as Readable, 'close')
  t.equal(readable?.destroyed, true)
})

t.test('a source that is slow to yield is stopped as soon as the stream ends', async t => {
  const app = await build(t)
  let finished = false
  const done = new Promise<boolean>(resolve => {
    app.get('/', (_request, reply) => {
      const stream = reply.sse()
      stream.consume((async function * () {
        try {
          yield 'first'
          await new Promise(resolve => setTimeout(resolve, 200))
          yield 'never sent'
          throw new Error('never thrown either')
        } finally {
          finished = true
        }
      })()).then(resolve)
    })
  })
  const response = await get(`${await listen(app)}/`)
  await readUntil(response, 'first')
  response.destroy()
  t.equal(await done, false, 'consume() resolved without waiting for the next item')
  await until(() => finished, 'the generator to finish')
})

t.test('a source error is logged, the chosen error event is sent, and the stream ends', async t => {
  const { logger, lines } = captureLogs()
  const app = await build(t, {}, { logger })
  const results: boolean[] = []
  const failing = async function * (): AsyncGenerator<string> {
    yield 'one'
    throw new Error('model went away')
  }
  app.get('/event', async (_request, reply) => {
    results.push(await reply.sse().consume(failing(), { onError: err => ({ event: 'error', data: (err as Error).message }) }))
  })
  app.get('/plain', async (_request, reply) => { results.push(await reply.sse().consume(failing())) })
  app.get('/bad-handler', async (_request, reply) => {
    results.push(await reply.sse().consume(failing(), { onError: () => { throw new Error('handler broke') } }))
  })
  app.get('/bad-item', async (_request, reply) => {
    results.push(await reply.sse().consume([{ data: 'x', id: 'line\nbreak' }]))
  })
  app.get('/bad-shape', async (_request, reply) => {
    results.push(await reply.sse().consume([{ payload: 'x' } as unknown as string]))
  })
  t.same(await collect(await injectEventStream(app, '/event')), [{ type: 'message', data: 'one' }, { type: 'error', data: 'model went away' }])
  t.same(await collect(await injectEventStream(app, '/plain')), [{ type: 'message', data: 'one' }])
  t.same(await collect(await injectEventStream(app, '/bad-handler')), [{ type: 'message', data: 'one' }])
  t.same(await collect(await injectEventStream(app, '/bad-item')), [])
  t.same(await collect(await injectEventStream(app, '/bad-shape')), [])
  t.same(results, [false, false, false, false, false])
  const failures = lines.filter(line => line.msg === 'event stream source failed; closing the stream')
  t.same(failures.map(line => line.err?.message), ['model went away', 'model went away', 'model went away',
    'Invalid SSE field: id must not contain CR or LF',
    'Invalid SSE field: a source item must be a string, a Uint8Array, or an object with data or json'])
  t.ok(lines.some(line => line.msg === 'event stream onError failed' && line.err?.message === 'handler broke'))
  t.ok(failures.every(line => line.level === 50 && typeof line.reqId === 'string'))
})

t.test('stall timeout: a client that takes nothing for that long is cut off', async t => {
  const { logger, lines } = captureLogs()
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * 1024 }, { logger })
  const source = counter(64 * 1024)
  let result: Promise<boolean> | undefined
  app.get('/', (_request, reply) => { result = reply.sse().consume(source.source, { stallTimeout: 150 }) })
  const response = await get(`${await listen(app)}/`)
  response.pause()
  await source.finishedPromise
  t.equal(await result, false)
  t.match(lines.find(line => line.msg.includes('stalled')), { level: 40, stallTimeout: 150, reqId: /\S/ })
  t.equal(app.openEventStreams, 0)
  response.destroy()
})

t.test('a stream that already ended stops the source at once', async t => {
  const app = await build(t)
  const source = counter()
  const result = new Promise<boolean>(resolve => {
    app.get('/', async (_request, reply) => {
      const stream = reply.sse()
      await stream.close()
      resolve(await stream.consume(source.source))
    })
  })
  await app.inject('/')
  t.equal(await result, false)
  t.equal(source.pulled, 0, 'nothing was pulled')
  // A generator stopped before it started never enters its try block: it is simply finished.
  t.same(await source.source.next(), { value: undefined, done: true }, 'the generator was returned')
})

t.test('a source whose return() fails is logged, not thrown', async t => {
  const { logger, lines } = captureLogs()
  const app = await build(t, {}, { logger })
  const iterable = (fail: 'throw' | 'reject'): Iterable<string> & AsyncIterable<string> => ({
    [Symbol.asyncIterator]: () => ({
      next: async () => ({ value: 'x', done: false }),
      return: fail === 'throw'
        ? () => { throw new Error('return threw') }
        : async () => { throw new Error('return rejected') }
    }),
    [Symbol.iterator]: () => [][Symbol.iterator]()
  })
  const failures = ['throw', 'reject'] as const
  for (const fail of failures) {
    app.get(`/${fail}`, async (_request, reply) => {
      const stream = reply.sse()
      const consuming = stream.consume(iterable(fail))
      await stream.close()
      t.equal(await consuming, false)
    })
  }
  for (const fail of failures) await app.inject(`/${fail}`)
  await until(() => lines.filter(line => line.msg === 'event stream source failed to stop').length === 2, 'two log lines')
  t.same(lines.filter(line => line.msg === 'event stream source failed to stop').map(line => line.err?.message), ['return threw', 'return rejected'])
})

t.test('a source that rejects after the stream ended causes no unhandled rejection', async t => {
  const app = await build(t)
  let fail!: (err: Error) => void
  const consumed = new Promise<boolean>(resolve => {
    app.get('/', (_request, reply) => {
      const stream = reply.sse()
      const source: AsyncIterable<string> = {
        [Symbol.asyncIterator]: () => ({ next: async () => await new Promise((_resolve, reject) => { fail = reject }) })
      }
      stream.consume(source).then(resolve)
      stream.close()
    })
  })
  await app.inject('/')
  t.equal(await consumed, false)
  fail(new Error('late'))
  await tick()
  t.pass('the late rejection was handled')
})

t.test('an HTTP client reading a consumed stream gets every item', async t => {
  const app = await build(t)
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    await stream.consume(Array.from({ length: 1000 }, (_, i) => ({ data: `token ${i}`, id: i })))
    await stream.close()
  })
  const body = await readAll(await get(`${await listen(app)}/`))
  t.equal(body.split('\n\n').length - 1, 1000)
  t.ok(body.endsWith('id: 999\ndata: token 999\n\n'))
})
