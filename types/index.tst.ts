import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyRequest, type FastifyTypeProvider } from 'fastify'
import { expect, test } from 'tstyche'
import fastifyEventStream, {
  EventHub, EventStream, FST_SSE_INVALID_FIELD, MemoryStore, encodeComment, encodeMessage, injectEventStream, type EncodedMessage,
  type CompressionOptions, type EventMap, type EventStore, type FastifyEventStreamOptions, type HubStats, type LastEventIdOf,
  type MessageOptions, type ParsedEvent, type StoredEvent, type StreamEncoding, type StreamOptions,
  type AdmissionStats, type Refusal, type RefusalReason, type StreamAdmission, type Tags
} from '../index.js'

const app = Fastify()
app.register(fastifyEventStream, { heartbeat: 10_000, maxBufferedBytes: 1 << 20, retry: 3000 })

test('plugin options', () => {
  expect(app.register).type.toBeCallableWith(fastifyEventStream)
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { heartbeat: false })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { heartbeat: true })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { maxBufferedBytes: '1mb' })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { retry: '3s' })
  expect(app.openEventStreams).type.toBe<number>()
})

test('reply.sse() returns a stream whose lastEventId is a string by default', () => {
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(stream).type.toBe<EventStream<EventMap, string>>()
    expect(stream.lastEventId).type.toBe<string | undefined>()
    expect(stream.signal).type.toBe<AbortSignal>()
    expect(stream.closed).type.toBe<boolean>()
    expect(stream.close()).type.toBe<Promise<void>>()
    expect(reply.sse).type.toBeCallableWith(201)
    expect(reply.sse).type.not.toBeCallableWith('200')
  })
})

test('message() and comment()', () => {
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(stream.message('text')).type.toBe<Promise<boolean>>()
    expect(stream.message).type.toBeCallableWith(new Uint8Array(1), { id: 1, event: 'e', retry: 1000 })
    expect(stream.message).type.toBeCallableWith(Buffer.from('x'), { id: '' })
    expect(stream.message).type.not.toBeCallableWith(42)
    expect(stream.message).type.not.toBeCallableWith({ data: 'x' })
    expect(stream.message).type.not.toBeCallableWith('x', { id: true })
    expect(stream.message).type.not.toBeCallableWith('x', { event: 1 })
    expect(stream.message).type.not.toBeCallableWith('x', { retry: '1s' })
    expect(stream.comment()).type.toBe<Promise<boolean>>()
    expect(stream.comment).type.not.toBeCallableWith(1)
  })
})

test('typed JSON events: the event map checks names and payloads', () => {
  app.get('/', (_request, reply) => {
    const stream = reply.sse<{ tick: { n: number }, note: string }>()
    expect(stream.send('tick', { n: 1 })).type.toBe<Promise<boolean>>()
    expect(stream.send).type.toBeCallableWith('note', 'text', { id: 3, retry: 10 })
    expect(stream.send).type.not.toBeCallableWith('tock', { n: 1 })
    expect(stream.send).type.not.toBeCallableWith('tick', { n: '1' })
    expect(stream.send).type.not.toBeCallableWith('note', 1)
    expect(stream.send).type.not.toBeCallableWith('tick', { n: 1 }, { event: 'other' })
    const loose = reply.sse()
    expect(loose.send).type.toBeCallableWith('anything', { any: 'payload' })
  })
})

test('lastEventId follows the route generic headers', () => {
  app.get<{ Headers: { 'last-event-id'?: number } }>('/', (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<number | undefined>()
  })
  app.get<{ Headers: { 'last-event-id': `${number}` } }>('/', (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<`${number}` | undefined>()
  })
  app.get<{ Headers: { authorization: string } }>('/', (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<string | undefined>()
  })
})

interface IntegerHeadersProvider extends FastifyTypeProvider {
  validator: this['schema'] extends { properties: { 'last-event-id': { type: 'integer' } } }
    ? { 'last-event-id'?: number }
    : unknown
  serializer: unknown
}

test('lastEventId follows a type provider\'s header schema', () => {
  const typed = app.withTypeProvider<IntegerHeadersProvider>()
  typed.get('/', {
    schema: { headers: { type: 'object', properties: { 'last-event-id': { type: 'integer' } } } as const }
  }, (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<number | undefined>()
  })
})

test('lastEventId follows a TypeBox header schema through @fastify/type-provider-typebox', () => {
  const typed = app.withTypeProvider<TypeBoxTypeProvider>()
  typed.get('/', {
    schema: { headers: Type.Object({ 'last-event-id': Type.Optional(Type.Integer()) }) }
  }, (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<number | undefined>()
  })
  typed.get('/', {
    schema: { querystring: Type.Object({ since: Type.Optional(Type.String()) }) }
  }, (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<string | undefined>()
  })
})

test('compression: per plugin and per stream, with the codings this package has', () => {
  app.get('/', (_request, reply) => {
    expect(reply.sse(200, { compression: { encodings: ['deflate', 'gzip'], level: 1, window: 1024 } })).type.toBeAssignableTo<EventStream>()
    expect(reply.sse(undefined, { compression: false })).type.toBeAssignableTo<EventStream>()
    expect(reply.sse).type.not.toBeCallableWith(200, { compression: { encodings: ['br'] } })
    expect(reply.sse).type.not.toBeCallableWith(200, { compression: 'gzip' })
    expect(reply.sse).type.not.toBeCallableWith(200, { compress: true })
  })
  expect<FastifyEventStreamOptions['compression']>().type.toBe<boolean | CompressionOptions | undefined>()
  expect<CompressionOptions['encodings']>().type.toBe<readonly StreamEncoding[] | undefined>()
  expect<StreamEncoding>().type.toBe<'gzip' | 'deflate'>()
  expect<StreamOptions>().type.toBe<{ compression?: boolean | CompressionOptions, refusal?: Refusal }>()
})

test('exports', () => {
  expect<LastEventIdOf<unknown>>().type.toBe<string>()
  expect<LastEventIdOf<unknown, { lastEventId?: number }>>().type.toBe<string | number>()
  expect<LastEventIdOf<{ 'last-event-id'?: `${number}` }, { lastEventId?: number, other: boolean }>>().type.toBe<`${number}` | number>()
  expect<LastEventIdOf<{ 'last-event-id'?: 'a' }, { since?: number }>>().type.toBe<'a'>()
  expect<LastEventIdOf<{ 'last-event-id'?: 'a' | 'b' }>>().type.toBe<'a' | 'b'>()
  expect(encodeMessage('x', { id: 1 })).type.toBe<EncodedMessage>()
  expect(encodeComment('x')).type.toBe<EncodedMessage>()
  expect<EncodedMessage>().type.toBeAssignableTo<Buffer>()
  expect(encodeMessage).type.not.toBeCallableWith('x', { id: null })
  expect(new FST_SSE_INVALID_FIELD('x').code).type.toBe<'FST_SSE_INVALID_FIELD'>()
  expect(new FST_SSE_INVALID_FIELD('x')).type.toBeAssignableTo<Error>()
  expect<MessageOptions>().type.toBe<{ id?: string | number, event?: string, retry?: number }>()
})

test('consume() takes iterables of items, typed JSON items included', () => {
  app.get('/', (_request, reply) => {
    const stream = reply.sse<{ token: { text: string } }>()
    async function * tokens (): AsyncGenerator<{ event: 'token', json: { text: string } }> {
      yield { event: 'token', json: { text: 'hi' } }
    }
    expect(stream.consume(tokens())).type.toBe<Promise<boolean>>()
    expect(stream.consume).type.toBeCallableWith(['a', new Uint8Array(1), { data: 'x', id: 1, event: 'e', retry: 5 }])
    expect(stream.consume).type.toBeCallableWith(tokens(), { stallTimeout: 1000, onError: () => ({ event: 'token', json: { text: 'failed' } }) })
    expect(stream.consume).type.not.toBeCallableWith([{ event: 'token', json: { text: 1 } }])
    expect(stream.consume).type.not.toBeCallableWith([{ event: 'other', json: { text: 'x' } }])
    expect(stream.consume).type.not.toBeCallableWith([42])
    expect(stream.consume).type.not.toBeCallableWith('a string')
    expect(stream.consume).type.not.toBeCallableWith(['x'], { stallTimeout: '1s' })
  })
})

test('injectEventStream()', async () => {
  const response = await injectEventStream(app, '/events')
  expect(response.statusCode).type.toBe<number>()
  expect(response.close()).type.toBe<Promise<void>>()
  for await (const event of response) {
    expect(event).type.toBe<ParsedEvent>()
    expect(event.data).type.toBe<string>()
    expect(event.id).type.toBe<string | undefined>()
  }
  expect(injectEventStream).type.toBeCallableWith(app, { url: '/events', headers: { 'last-event-id': '3' } })
  expect(injectEventStream).type.not.toBeCallableWith('/events')
})

test('stream.write() takes only frames made by the encoders', () => {
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(stream.write(encodeMessage('x'))).type.toBe<Promise<boolean>>()
    expect(stream.write).type.toBeCallableWith(encodeComment('ping'))
    expect(stream.write).type.not.toBeCallableWith(Buffer.from('data: x\n\n'))
    expect(stream.write).type.not.toBeCallableWith('data: x\n\n')
  })
})

test('the hub', () => {
  expect(app.eventHub).type.toBe<EventHub>()
  expect(app.eventHub.publish('topic', 'text', { event: 'e', id: 'own-1' })).type.toBe<Promise<string>>()
  expect(app.eventHub.publish).type.not.toBeCallableWith('topic', new Uint8Array(1))
  expect(app.eventHub.publish).type.not.toBeCallableWith('topic', 'x', { id: 1 })
  expect(app.eventHub.publish).type.not.toBeCallableWith('topic', 'x', { retry: 1 })
  expect(app.eventHub.stats()).type.toBe<HubStats>()
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(app.eventHub.subscribe(stream, ['a', 'b'], { lastEventId: 3 })).type.toBe<Promise<boolean>>()
    expect(app.eventHub.subscribe).type.toBeCallableWith(stream, 'a')
    expect(app.eventHub.subscribe).type.not.toBeCallableWith(stream, [1])
    expect(app.eventHub.unsubscribe(stream)).type.toBe<boolean>()
  })
  const typed = app.eventHub as EventHub<{ chat: { text: string } }>
  expect(typed.send('room', 'chat', { text: 'hi' })).type.toBe<Promise<string>>()
  expect(typed.send).type.not.toBeCallableWith('room', 'chat', { text: 1 })
  expect(typed.send).type.not.toBeCallableWith('room', 'other', { text: 'hi' })
})

test('stores', () => {
  expect(new MemoryStore({ historySize: 10, historyAge: 60_000 })).type.toBeAssignableTo<EventStore>()
  expect(MemoryStore).type.not.toBeConstructableWith({ historySize: '10' })
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { hub: { store: new MemoryStore(), resyncEvent: 'reload' } })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { hub: { store: {} } })
  expect<StoredEvent>().type.toBe<{ readonly topic: string, readonly seq: number, readonly id: string, readonly event?: string, readonly data: string, readonly tags?: Tags }>()
})

test('lastEventId follows the route querystring too (lastEventIdQuery): the header or the query parameter', () => {
  app.get<{ Querystring: { lastEventId?: number } }>('/q', (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<string | number | undefined>()
  })
  app.get<{ Headers: { 'last-event-id'?: `${number}` }, Querystring: { lastEventId?: `${number}` } }>('/q2', (_request, reply) => {
    expect(reply.sse().lastEventId).type.toBe<`${number}` | undefined>()
  })
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { lastEventIdQuery: 'lastEventId', maxStreamAge: 3_600_000, maxStreamAgeJitter: 60_000 })
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { reconnectWindow: [1000, 5000], maxStreamAge: false, lastEventIdQuery: false })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { reconnectWindow: 5000 })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { lastEventIdQuery: true })
  expect(app.eventHub.stats().endedByAge).type.toBe<number>()
  expect(app.eventHub.stats().endedByShutdown).type.toBe<number>()
})

test('admission control: options, the runtime caps, stats, and a route refusal', () => {
  expect(app.register).type.toBeCallableWith(fastifyEventStream, {
    admission: { maxStreams: 5000, maxStreamsPerKey: false, key: (request: FastifyRequest) => request.headers['x-user'] as string | undefined, refusal: 'retry', retryWindow: [500, 1500], underPressure: false }
  })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { admission: { refusal: 'drop' } })
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { admission: { key: () => 1 } })
  expect(app.eventStreamAdmission).type.toBe<StreamAdmission>()
  expect(app.eventStreamAdmission.maxStreams).type.toBe<number | false>()
  expect(app.eventStreamAdmission.stats()).type.toBe<AdmissionStats>()
  expect(app.eventStreamAdmission.stats().refused).type.toBe<Record<RefusalReason, number>>()
  app.get('/', (_request, reply) => {
    expect(reply.sse).type.toBeCallableWith(200, { refusal: 'retry' })
    expect(reply.sse).type.not.toBeCallableWith(200, { refusal: 503 })
  })
})
