import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { expect, test } from 'tstyche'
import fastifyEventStream, { type EventStore, type StoreFailure, type StoreStats } from 'fastify-event-stream'
import { RedisStore, type RedisStoreOptions, type RedisStoreStats } from 'fastify-event-stream/redis'

const app = Fastify()

test('the Redis store, from its own entry point', () => {
  expect(new RedisStore({ connection: 'redis://127.0.0.1:6379' })).type.toBeAssignableTo<EventStore>()
  expect(RedisStore).type.toBeConstructableWith({ client: new Redis(), prefix: '{app}', historySize: 100, historyAge: 60_000, keyTtl: 86_400_000, timeout: 2000 })
  expect(RedisStore).type.toBeConstructableWith({ connection: { host: '127.0.0.1', port: 6379 }, log: app.log })
  expect(RedisStore).type.not.toBeConstructableWith({ client: 'redis://127.0.0.1' })
  expect(RedisStore).type.not.toBeConstructableWith({})
  expect(RedisStore).type.not.toBeConstructableWith({ client: new Redis(), connection: 'redis://x' })
  expect(RedisStore).type.not.toBeConstructableWith({ connection: 'redis://x', timeout: '3s' })
  expect<RedisStoreOptions['historyAge']>().type.toBe<number | undefined>()
  expect(app.register).type.toBeCallableWith(fastifyEventStream, { hub: { store: new RedisStore({ connection: 'redis://x' }) } })
  expect<StoreFailure>().type.toBe<(err: Error) => void>()
})

test('the Redis store\'s counters: numbers a dashboard reads, and a StoreStats for the hub', () => {
  const store = new RedisStore({ connection: 'redis://x' })
  expect(store.stats()).type.toBe<RedisStoreStats>()
  expect(store.stats().lagMs).type.toBe<number>()
  expect(store.stats().gaps).type.toBe<number>()
  expect(store.stats()).type.toBeAssignableTo<StoreStats>()
  expect(store.stats()).type.not.toHaveProperty('nonsense')
  expect(app.eventHub.stats().store).type.toBe<StoreStats | undefined>()
})
