import { Type } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import t from 'tap'
import fastifyEventStream, { EventStreamParser, FST_SSE_INVALID_EVENT, injectEventStream, MemoryStore, type EventHub, type ParsedEvent } from '../index.js'
import { build, get, listen, readUntil } from './helpers.js'

const price = {
  type: 'object',
  properties: { symbol: { type: 'string' }, price: { type: 'number' } },
  required: ['symbol', 'price']
}

t.test('schema.events: send() serializes with the event\'s schema over a real socket, leaving out what it does not declare', async t => {
  const app = await build(t, { heartbeat: false })
  const errors: unknown[] = []
  app.get('/prices', { schema: { events: { price, halt: Type.Object({ symbol: Type.String() }) } } }, async (_request, reply) => {
    const stream = reply.sse()
    await stream.send('price', { symbol: 'ACME', price: 1.5, ownerPasswordHash: 'secret' } as never)
    // A payload its schema refuses, and an event the route does not declare: errors, nothing sent, the stream goes on.
    for (const send of [() => stream.send('price', { symbol: 'ACME', price: 'a lot' }), () => stream.send('news' as never, { text: 'hi' } as never), () => stream.send('price', { symbol: 'ACME' })]) {
      try {
        await send()
      } catch (err) {
        errors.push(err)
      }
    }
    await stream.send('halt', { symbol: 'ACME', reason: 'leaked' } as never)
    await stream.close()
  })
  const response = await get(`${await listen(app)}/prices`)
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser(event => events.push(event))
  response.setEncoding('utf8')
  for await (const chunk of response) parser.feed(chunk as string)
  t.same(events.map(event => [event.type, event.data]), [['price', '{"symbol":"ACME","price":1.5}'], ['halt', '{"symbol":"ACME"}']])
  t.equal(errors.length, 3)
  for (const err of errors) t.ok(err instanceof FST_SSE_INVALID_EVENT, String(err))
  const [wrongType, undeclared, missing] = errors as Array<Error & { code: string, cause?: unknown }>
  t.match(wrongType.message, /^Invalid event price: .*a lot/)
  t.ok(wrongType.cause instanceof Error, 'the serializer\'s own error is the cause')
  t.equal(undeclared.message, 'Invalid event news: the route\'s schema.events does not declare it')
  t.match(missing.message, /^Invalid event price: .*symbol|price/)
})

t.test('schema.events are compiled once per route by the route\'s serializer compiler (the app\'s own, when it set one)', async t => {
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false })
  const compiled: unknown[] = []
  app.setSerializerCompiler(({ schema }) => {
    compiled.push(schema)
    return data => `custom ${JSON.stringify(data)}`
  })
  app.get('/ticks', { schema: { events: { tick: { type: 'integer' } } } }, async (_request, reply) => {
    const stream = reply.sse()
    await stream.send('tick', 1)
    await stream.close()
  })
  t.teardown(() => app.close())
  for (let i = 0; i < 3; i++) {
    const response = await injectEventStream(app, '/ticks')
    const events: ParsedEvent[] = []
    for await (const event of response) events.push(event)
    t.same(events.map(event => event.data), ['custom 1'])
  }
  t.same(compiled, [{ type: 'integer' }], 'one compilation for three streams')
})

t.test('two routes sharing one events object each serialize with their own serializer compiler', async t => {
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false })
  const events = { tick: { type: 'integer' } }
  const handler = async (_request: unknown, reply: { sse: () => { send: (event: string, payload: unknown) => Promise<boolean>, close: () => Promise<void> } }): Promise<void> => {
    const stream = reply.sse()
    await stream.send('tick', 1)
    await stream.close()
  }
  app.get('/default', { schema: { events } }, handler as never)
  await app.register(async child => {
    child.setSerializerCompiler(() => data => `child ${JSON.stringify(data)}`)
    child.get('/child', { schema: { events } }, handler as never)
  })
  t.teardown(() => app.close())
  for (const [path, data] of [['/default', '1'], ['/child', 'child 1'], ['/default', '1']]) {
    const events: ParsedEvent[] = []
    for await (const event of await injectEventStream(app, path)) events.push(event)
    t.same(events.map(event => event.data), [data], path)
  }
})

t.test('a route without schema.events sends any event as JSON, as before', async t => {
  const app = await build(t, { heartbeat: false })
  app.get('/', { schema: { querystring: { type: 'object' } } }, (_request, reply) => {
    reply.sse().send('anything', { a: 1, b: [2] }).catch(() => {})
  })
  const response = await get(`${await listen(app)}/`)
  t.match(await readUntil(response, '\n\n'), 'event: anything\ndata: {"a":1,"b":[2]}\n\n')
  response.destroy()
})

t.test('a malformed schema.events stops the route at registration with FST_SSE_INVALID_OPTION', async t => {
  const cases: Array<[unknown, RegExp]> = [
    ['price', /schema\.events of GET \/bad: expected an object of one JSON schema per event name/],
    [[price], /expected an object of one JSON schema per event name/],
    [null, /expected an object/],
    [{ 'two\nlines': price }, /"two\\nlines" is not an event name/],
    [{ '': price }, /"" is not an event name/],
    [{ price: 'number' }, /schema\.events\.price of GET \/bad: expected a JSON schema/]
  ]
  for (const [events, message] of cases) {
    const app = Fastify()
    await app.register(fastifyEventStream)
    t.throws(() => app.get('/bad', { schema: { events } as never }, () => {}), { code: 'FST_SSE_INVALID_OPTION', message }, JSON.stringify(events))
    await app.close()
  }
})

t.test('hub.events: send() on the hub serializes with the event\'s schema, once for every subscriber, leaving out what it does not declare', async t => {
  const order = Type.Object({ id: Type.String(), total: Type.Number() })
  const app = await build(t, { heartbeat: false, hub: { events: { order, cancelled: Type.Object({ id: Type.String() }) } } })
  app.get('/orders', (_request, reply) => { app.eventHub.subscribe(reply.sse(), 'orders').catch(() => {}) })
  const url = await listen(app)
  const readers = await Promise.all([get(`${url}/orders`), get(`${url}/orders`)])
  // Each subscriber first gets its position (an id-only frame); then both are live.
  await Promise.all(readers.map(async response => await readUntil(response, '\n\n')))
  const hub = app.eventHub as unknown as EventHub<{ order: { id: string, total: number }, cancelled: { id: string } }>
  await hub.send('orders', 'order', { id: 'o-1', total: 12.5, customerEmail: 'a@example.com' } as never)
  // An event the hub does not declare and a payload its schema refuses: coded errors, before anything is kept.
  const published = app.eventHub.stats().published
  t.throws(() => hub.send('orders', 'refund' as never, { id: 'o-1' } as never), { code: 'FST_SSE_INVALID_EVENT', message: 'Invalid event refund: hub.events does not declare it' })
  t.throws(() => hub.send('orders', 'order', { id: 'o-2', total: 'twelve' } as never), { code: 'FST_SSE_INVALID_EVENT', message: /^Invalid event order: / })
  t.equal(app.eventHub.stats().published, published, 'nothing published')
  await hub.send('orders', 'cancelled', { id: 'o-1', reason: 'leaked' } as never)
  // publish() still takes any string: the raw path.
  await app.eventHub.publish('orders', 'raw', { event: 'note' })
  for (const response of readers) {
    const text = await readUntil(response, 'data: raw\n\n')
    t.match(text, /^id: \d+\nevent: order\ndata: \{"id":"o-1","total":12\.5\}\n\nid: \d+\nevent: cancelled\ndata: \{"id":"o-1"\}\n\nid: \d+\nevent: note\ndata: raw\n\n$/)
    response.destroy()
  }
})

t.test('hub.events compile with the app\'s serializer compiler and shared schemas, at ready or at the first send() before it', async t => {
  const custom = Fastify()
  const store = new MemoryStore()
  await custom.register(fastifyEventStream, { heartbeat: false, hub: { store, events: { tick: { type: 'integer' } } } })
  const compiled: unknown[] = []
  custom.setSerializerCompiler(({ schema }) => {
    compiled.push(schema)
    return data => `custom ${JSON.stringify(data)}`
  })
  t.teardown(() => custom.close())
  await custom.ready()
  t.same(compiled, [{ type: 'integer' }], 'compiled at ready by the app\'s compiler')
  const events = new Promise<string[]>(resolve => {
    const seen: string[] = []
    store.listen('ticks', event => { seen.push(event.data); if (seen.length === 2) resolve(seen) }).catch(() => {})
  })
  await custom.eventHub.send('ticks', 'tick', 1)
  await custom.eventHub.send('ticks', 'tick', 2)
  t.same(await events, ['custom 1', 'custom 2'])
  t.equal(compiled.length, 1, 'once')

  // Before ready: Fastify's default compiler, with the app's shared schemas ($ref to addSchema()).
  const shared = Fastify()
  const sharedStore = new MemoryStore()
  shared.addSchema({ $id: 'money', type: 'object', properties: { amount: { type: 'number' }, currency: { type: 'string' } } })
  await shared.register(fastifyEventStream, { heartbeat: false, hub: { store: sharedStore, events: { paid: { type: 'object', properties: { price: { $ref: 'money#' } } } } } })
  t.teardown(() => shared.close())
  const kept = new Promise<string>(resolve => { sharedStore.listen('payments', event => resolve(event.data)).catch(() => {}) })
  await shared.eventHub.send('payments', 'paid', { price: { amount: 3, currency: 'EUR', card: '4242' }, extra: true })
  t.equal(await kept, '{"price":{"amount":3,"currency":"EUR"}}')
})

t.test('malformed hub.events stop the registration, and a schema the compiler refuses stops ready(), with FST_SSE_INVALID_OPTION', async t => {
  for (const [events, message] of [
    ['order', /hub\.events: expected an object of one JSON schema per event name/],
    [{ 'a\rb': price }, /hub\.events: "a\\rb" is not an event name/],
    [{ price: 1 }, /hub\.events\.price: expected a JSON schema/]
  ] as Array<[unknown, RegExp]>) {
    const app = Fastify()
    await t.rejects(async () => await app.register(fastifyEventStream, { hub: { events: events as never } }), { code: 'FST_SSE_INVALID_OPTION', message })
    await app.close().catch(() => {})
  }
  const app = Fastify()
  await app.register(fastifyEventStream, { hub: { events: { price: { $ref: 'nowhere#' } } } })
  await t.rejects(async () => await app.ready(), { code: 'FST_SSE_INVALID_OPTION', message: /hub\.events\.price: the serializer compiler refused its schema: / })
  await app.close().catch(() => {})
})
