import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import fastifyEventStream, { type Presence, type PresenceOption, type PresenceStore, type TagFilter, type Tags } from '../index.js'
import { RedisStore } from '../lib/stores/redis.js'

const app = Fastify()
app.register(fastifyEventStream, { hub: { presence: { ttl: 30_000, announce: true } } })

test('publish carries tags of string values', () => {
  expect(app.eventHub.publish).type.toBeCallableWith('feed', 'x', { tags: { team: 'a' } })
  expect(app.eventHub.send).type.toBeCallableWith('feed', 'order', { n: 1 }, { tags: { team: 'a' } })
  expect(app.eventHub.publish).type.not.toBeCallableWith('feed', 'x', { tags: { team: 1 } })
  // A ternary's branches with different tags: the missing one is undefined, which is left out.
  const tags = Math.random() > 0.5 ? { visibility: 'team', team: 'a' } : { team: 'a' }
  expect(app.eventHub.publish).type.toBeCallableWith('feed', 'x', { tags })
  expect(app.eventHub.publish).type.not.toBeCallableWith('feed', 'x', { tags: ['a'] })
  expect<{ team: string }>().type.toBeAssignableTo<Tags>()
})

test('a filter is data: eq, in, and, or, not', () => {
  expect<{ tag: 'team', eq: 'a' }>().type.toBeAssignableTo<TagFilter>()
  expect<{ and: [{ tag: 'team', in: ['a', 'b'] }, { not: { tag: 'level', eq: 'guest' } }] }>().type.toBeAssignableTo<TagFilter>()
  expect<{ tag: 'team', like: 'a' }>().type.not.toBeAssignableTo<TagFilter>()
  expect<{ tag: 'team', eq: 1 }>().type.not.toBeAssignableTo<TagFilter>()
  expect<(tags: Tags) => boolean>().type.not.toBeAssignableTo<TagFilter>()
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(app.eventHub.subscribe).type.toBeCallableWith(stream, 'feed', { filter: { tag: 'team', eq: 'a' } })
    expect(app.eventHub.subscribe).type.not.toBeCallableWith(stream, 'feed', { filter: (tags: Tags) => tags.team === 'a' })
  })
})

test('presence: a member or a count, and who is on a topic', () => {
  expect<'count'>().type.toBeAssignableTo<PresenceOption>()
  expect<{ id: string, info: { name: string } }>().type.toBeAssignableTo<PresenceOption>()
  expect<{ info: { name: string } }>().type.not.toBeAssignableTo<PresenceOption>()
  expect<'all'>().type.not.toBeAssignableTo<PresenceOption>()
  app.get('/', (_request, reply) => {
    const stream = reply.sse()
    expect(app.eventHub.subscribe).type.toBeCallableWith(stream, 'doc', { presence: { id: 'ann', info: { name: 'Ann' } } })
    expect(app.eventHub.subscribe).type.toBeCallableWith(stream, 'doc', { presence: 'count' })
    expect(app.eventHub.subscribe).type.not.toBeCallableWith(stream, 'doc', { presence: { id: 1 } })
  })
  expect(app.eventHub.presence('doc')).type.toBe<Promise<Presence>>()
  expect(app.eventHub.presenceCount('doc')).type.toBe<Promise<number>>()
  expect<Presence['members'][number]>().type.toBe<{ id: string, info?: unknown, streams: number }>()
  expect(app.register).type.not.toBeCallableWith(fastifyEventStream, { hub: { presence: { ttl: '30s' } } })
})

test('the Redis store keeps presence for the fleet', () => {
  const store = new RedisStore({ connection: 'redis://127.0.0.1:6379' })
  expect(store.presence(30_000)).type.toBeAssignableTo<PresenceStore>()
})
