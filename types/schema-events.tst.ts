import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import fastifySwagger, { type SwaggerTransform } from '@fastify/swagger'
import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import fastifyEventStream, { eventStreamTransform, type EventHub, type EventMap, type EventsOf, type EventsOfSchema, type EventStream } from '../index.js'

const app = Fastify()
app.register(fastifyEventStream)

test('schema.events types send() through @fastify/type-provider-typebox', () => {
  const typed = app.withTypeProvider<TypeBoxTypeProvider>()
  typed.get('/prices', {
    schema: {
      events: {
        price: Type.Object({ symbol: Type.String(), price: Type.Number() }),
        halt: Type.Object({ symbol: Type.String() })
      },
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.Integer()) })
    }
  }, (_request, reply) => {
    const stream = reply.sse()
    expect(stream).type.toBe<EventStream<{ price: { symbol: string, price: number }, halt: { symbol: string } }, number>>()
    expect(stream.send).type.toBeCallableWith('price', { symbol: 'ACME', price: 1.5 })
    expect(stream.send).type.not.toBeCallableWith('price', { symbol: 'ACME', price: '1.5' })
    expect(stream.send).type.not.toBeCallableWith('price', { symbol: 'ACME' })
    expect(stream.send).type.not.toBeCallableWith('news', { symbol: 'ACME' })
    expect(stream.send).type.toBeCallableWith('halt', { symbol: 'ACME' })
    // A generic on reply.sse() still wins.
    expect(reply.sse<{ other: number }>().send).type.toBeCallableWith('other', 1)
  })
})

test('schema.events types send() through @fastify/type-provider-json-schema-to-ts', () => {
  const typed = app.withTypeProvider<JsonSchemaToTsProvider>()
  typed.get('/jobs', {
    schema: {
      events: {
        progress: {
          type: 'object',
          properties: { percent: { type: 'integer' }, note: { type: 'string' } },
          required: ['percent'],
          additionalProperties: false
        }
      }
    } as const
  }, (_request, reply) => {
    const stream = reply.sse()
    expect(stream.send).type.toBeCallableWith('progress', { percent: 40 })
    expect(stream.send).type.toBeCallableWith('progress', { percent: 40, note: 'half way' })
    expect(stream.send).type.not.toBeCallableWith('progress', { percent: '40' })
    expect(stream.send).type.not.toBeCallableWith('done', { percent: 100 })
  })
})

test('without a type provider, the declared names are the events, their payloads unknown; without schema.events, any', () => {
  app.get('/plain', { schema: { events: { tick: { type: 'integer' } } } }, (_request, reply) => {
    expect(reply.sse().send).type.toBeCallableWith('tick', 1)
    expect(reply.sse().send).type.not.toBeCallableWith('tock', 1)
  })
  app.get('/any', (_request, reply) => {
    expect(reply.sse()).type.toBe<EventStream<EventMap, string>>()
  })
  expect<EventsOfSchema<TypeBoxTypeProvider, { body: unknown }>>().type.toBe<EventMap>()
  expect(app.get).type.not.toBeCallableWith('/bad', { schema: { events: 'price' } }, () => {})
})

test('hub.events: the plugin takes them, and EventsOf types the hub from them', () => {
  const events = {
    order: Type.Object({ id: Type.String(), total: Type.Number() }),
    cancelled: Type.Object({ id: Type.String() })
  }
  expect(fastifyEventStream).type.toBeCallableWith(app, { hub: { events } })
  expect(fastifyEventStream).type.not.toBeCallableWith(app, { hub: { events: 'order' } })
  const hub = app.eventHub as EventHub<EventsOf<TypeBoxTypeProvider, typeof events>>
  expect(hub.send).type.toBeCallableWith('orders', 'order', { id: 'o-1', total: 12.5 })
  expect(hub.send).type.not.toBeCallableWith('orders', 'order', { id: 'o-1' })
  expect(hub.send).type.not.toBeCallableWith('orders', 'refund', { id: 'o-1' })
  expect<EventsOf<TypeBoxTypeProvider, typeof events>>().type.toBe<{ order: { id: string, total: number }, cancelled: { id: string } }>()
})

test('eventStreamTransform is a @fastify/swagger transform, alone or wrapping the app\'s own', () => {
  expect(eventStreamTransform()).type.toBeAssignableTo<SwaggerTransform>()
  const own: SwaggerTransform = ({ schema, url }) => ({ schema, url })
  expect(eventStreamTransform(own)).type.toBeAssignableTo<SwaggerTransform>()
  expect(app.register).type.toBeCallableWith(fastifySwagger, { openapi: { openapi: '3.2.0' }, transform: eventStreamTransform() })
  expect(eventStreamTransform).type.not.toBeCallableWith((input: { url: number }) => input)
})
