import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import 'fastify-event-stream'
import { connect, EventClient, EventClientError, type ClientErrorCode, type ClientEvent, type ClientState, type ConnectOptions, type EventOf, type Resync } from 'fastify-event-stream/client'

// One map for both ends: the route sends it, the page reads it.
type Events = {
  chat: { room: string, text: string }
  news: { n: number }
}

test('a route and a page share one event map', () => {
  const app = Fastify()
  app.get('/events', (_request, reply) => {
    const stream = reply.sse<Events>()
    expect(stream.send).type.toBeCallableWith('chat', { room: 'a', text: 'hi' })
  })
  const client = connect<Events>('/events')
  expect(client).type.toBe<EventClient<Events>>()
  client.on('chat', (data, event) => {
    expect(data).type.toBe<{ room: string, text: string }>()
    expect(event.type).type.toBe<'chat'>()
    expect(event.id).type.toBe<string | undefined>()
    expect(event.lastEventId).type.toBe<string>()
  })
  client.on('news', data => { expect(data.n).type.toBe<number>() })
  client.on('message', data => { expect(data).type.toBe<string>() })
  client.on('resync', data => { expect(data).type.toBe<Resync>() })
  expect(client.on('chat', () => {})).type.toBe<() => void>()
})

test('what must not compile: an event the map lacks, the wrong data type', () => {
  const client = connect<Events>('/events')
  expect(client.on).type.not.toBeCallableWith('nope', () => {})
  expect(client.on).type.not.toBeCallableWith('news', (data: { n: string }) => data)
  expect(client.on).type.not.toBeCallableWith('message', (data: number) => data)
  expect(connect).type.not.toBeCallableWith(42)
  expect(connect).type.not.toBeCallableWith('/events', { retry: '1s' })
  expect(connect).type.not.toBeCallableWith('/events', { storage: 'cookie' })
  expect(connect).type.not.toBeCallableWith('/events', { headers: () => 42 })
})

test('the iterator yields events discriminated by type', async () => {
  const client = connect<Events>('/events')
  for await (const event of client) {
    expect(event).type.toBe<EventOf<Events>>()
    if (event.type === 'news') expect(event.data).type.toBe<{ n: number }>()
    if (event.type === 'message') expect(event.data).type.toBe<string>()
    if (event.type === 'resync') expect(event.data.topics).type.toBe<string[]>()
  }
})

test('without a map: any event name, data unknown; message still text', () => {
  const client = connect('/events')
  client.on('anything', data => { expect(data).type.toBe<unknown>() })
  client.on('message', data => { expect(data).type.toBe<string>() })
  expect<EventOf<Record<string, unknown>>>().type.toBe<ClientEvent<string, unknown>>()
})

test('options, state and errors', () => {
  expect(connect).type.toBeCallableWith('/events', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'hi' }),
    headers: async () => ({ authorization: 'Bearer x' }),
    credentials: 'include',
    signal: AbortSignal.timeout(1000),
    storage: 'session',
    lastEventIdQuery: 'lastEventId',
    resyncEvent: 'resync',
    raw: ['note'],
    retry: 1000,
    maxRetryDelay: 30_000,
    idleTimeout: 45_000,
    share: true
  } satisfies ConnectOptions)
  expect(connect).type.toBeCallableWith('/events', { idleTimeout: false })
  expect(connect).type.not.toBeCallableWith('/events', { idleTimeout: true })
  expect(new EventClientError('FST_SSE_CLIENT_IDLE', 'x').code).type.toBe<ClientErrorCode>()
  expect(connect).type.toBeCallableWith(() => new URL('https://example.com/events'), { key: 'events', storage: { load: () => null, save: (_id: string) => {} } })
  const client = connect('/events')
  expect(client.state).type.toBe<ClientState>()
  expect<ClientState>().type.toBe<'connecting' | 'open' | 'closed'>()
  expect(client.error).type.toBe<EventClientError | undefined>()
  expect(client.lastEventId).type.toBe<string>()
  expect(client.onState).type.toBeCallableWith((state: ClientState, error: EventClientError | undefined) => { expect(state).type.toBe<ClientState>(); expect(error?.code).type.toBe<ClientErrorCode | undefined>() })
  expect(new EventClientError('FST_SSE_CLIENT_NETWORK', 'x').retryable).type.toBe<boolean>()
  expect(EventClientError).type.not.toBeConstructableWith('FST_SSE_NOT_A_CODE', 'x')
  expect(client.close).type.toBe<() => void>()
})
