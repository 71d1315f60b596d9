import { Type } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import t from 'tap'
import fastifyEventStream, { EventStreamParser, FST_SSE_INVALID_EVENT, injectEventStream, type ParsedEvent } from '../index.js'
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
