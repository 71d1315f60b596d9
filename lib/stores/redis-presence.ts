import type { Redis } from 'ioredis'
import type { PresenceChange, PresenceStore } from '../presence.js'
import { Script } from './redis-script.js'

// Presence in Redis. Per topic, three keys (the store's hash tag, so one Cluster slot):
//   <prefix>:p:<topic>   hash: "<instance>|<key>" -> a listed member's JSON (one field per stream)
//   <prefix>:pn:<topic>  hash: "<instance>" -> how many streams of that instance are on the topic (listed or counted)
//   <prefix>:pt:<topic>  sorted set: "<instance>", scored by when its entries expire (ms, Redis time)
// Each instance writes only its own fields, and renews them by one ZADD per topic: the renewal costs the same for
// ten members or ten thousand. A reader ignores, and deletes, the entries of an instance whose expiry passed (killed,
// partitioned): Redis 7.0 has no expiry per hash field, so the sorted set keeps it, as Centrifugo does.

const COMMON = `
local function now ()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep (p, pn, pt, ttl)
  redis.call('PEXPIRE', p, ttl * 2)
  redis.call('PEXPIRE', pn, ttl * 2)
  redis.call('PEXPIRE', pt, ttl * 2)
end
`

/**
 * KEYS: per topic p, pn, pt. ARGV: instance, ttl, then per topic: count, replace ('1' or '0'), joins n, leaves n,
 * then n (key, json) pairs, then n keys. Sets the instance's count (0 takes it out) and its members' fields; with
 * replace, its other fields of the topic go first.
 */
const UPDATE = `${COMMON}
local inst, ttl = ARGV[1], tonumber(ARGV[2])
local expires = now() + ttl
local a = 3
for t = 1, #KEYS, 3 do
  local p, pn, pt = KEYS[t], KEYS[t + 1], KEYS[t + 2]
  local count, replace, joins, leaves = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  if replace == '1' then
    local mine = inst .. '|'
    for _, field in ipairs(redis.call('HKEYS', p)) do
      if string.sub(field, 1, #mine) == mine then redis.call('HDEL', p, field) end
    end
  end
  for i = 1, joins do
    redis.call('HSET', p, inst .. '|' .. ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  for i = 1, leaves do
    redis.call('HDEL', p, inst .. '|' .. ARGV[a])
    a = a + 1
  end
  if count > 0 then
    redis.call('HSET', pn, inst, count)
    redis.call('ZADD', pt, expires, inst)
    keep(p, pn, pt, ttl)
  else
    redis.call('HDEL', pn, inst)
    redis.call('ZREM', pt, inst)
  end
end
return 1
`

/** KEYS: per topic p, pn, pt. ARGV: instance, ttl. Renews the instance's entries; returns the topics it lost (1-based). */
const REFRESH = `${COMMON}
local inst, ttl = ARGV[1], tonumber(ARGV[2])
local expires = now() + ttl
local lost = {}
for t = 1, #KEYS, 3 do
  local p, pn, pt = KEYS[t], KEYS[t + 1], KEYS[t + 2]
  if redis.call('HEXISTS', pn, inst) == 0 then
    lost[#lost + 1] = (t + 2) / 3
  else
    redis.call('ZADD', pt, expires, inst)
    keep(p, pn, pt, ttl)
  end
end
return lost
`

/**
 * KEYS: p, pn, pt. ARGV: '1' to list the members. Drops the entries of instances whose expiry passed, then returns
 * { count, members... }.
 */
const READ = `${COMMON}
local p, pn, pt = KEYS[1], KEYS[2], KEYS[3]
local dead = redis.call('ZRANGEBYSCORE', pt, '-inf', now())
if #dead > 0 then
  local gone = {}
  for _, inst in ipairs(dead) do
    gone[inst] = true
    redis.call('HDEL', pn, inst)
    redis.call('ZREM', pt, inst)
  end
  local fields = redis.call('HKEYS', p)
  for _, field in ipairs(fields) do
    local bar = string.find(field, '|', 1, true)
    if bar and gone[string.sub(field, 1, bar - 1)] then redis.call('HDEL', p, field) end
  end
end
local count = 0
for _, n in ipairs(redis.call('HVALS', pn)) do count = count + tonumber(n) end
local result = { count }
if ARGV[1] == '1' then
  for _, member in ipairs(redis.call('HVALS', p)) do result[#result + 1] = member end
end
return result
`

const scripts = { update: new Script(UPDATE), refresh: new Script(REFRESH), read: new Script(READ) }

/** Topics one script call carries at most. */
const MAX_TOPICS = 256

/** What the presence store borrows from the Redis store. */
export interface PresenceHost {
  readonly client: Redis
  readonly prefix: string
  /** Sends a command, failing with FST_SSE_STORE_UNAVAILABLE when Redis does not answer in time. */
  command: <T>(send: () => Promise<T>) => Promise<T>
}

/** Presence across the instances sharing a Redis store: see the data model above. */
export class RedisPresenceStore implements PresenceStore {
  readonly #host: PresenceHost
  readonly #instance: string
  readonly #ttl: number

  constructor (host: PresenceHost, instance: string, ttl: number) {
    this.#host = host
    this.#instance = instance
    this.#ttl = ttl
  }

  async update (changes: PresenceChange[]): Promise<void> {
    for (let i = 0; i < changes.length; i += MAX_TOPICS) {
      const keys: string[] = []
      const args: Array<string | number> = [this.#instance, this.#ttl]
      for (const { topic, count, joined, left, replace } of changes.slice(i, i + MAX_TOPICS)) {
        keys.push(...this.#keys(topic))
        args.push(count, replace === true ? '1' : '0', joined.length, left.length)
        for (const [key, member] of joined) args.push(key, member)
        args.push(...left)
      }
      await this.#host.command(() => scripts.update.run(this.#host.client, keys, args))
    }
  }

  async refresh (counts: Map<string, number>, state: (topic: string) => PresenceChange): Promise<void> {
    const topics = [...counts.keys()]
    for (let i = 0; i < topics.length; i += MAX_TOPICS) {
      const batch = topics.slice(i, i + MAX_TOPICS)
      const lost = await this.#host.command(() => scripts.refresh.run(this.#host.client, batch.flatMap(topic => this.#keys(topic)), [this.#instance, this.#ttl])) as number[]
      // Redis restarted or was flushed: the instance writes what it has again, as it stands now.
      if (lost.length > 0) await this.update(lost.map(index => state(batch[index - 1])))
    }
  }

  async read (topic: string, listed: boolean): Promise<{ count: number, members: string[] }> {
    const reply = await this.#host.command(() => scripts.read.run(this.#host.client, this.#keys(topic), [listed ? '1' : '0'])) as [number, ...string[]]
    return { count: reply[0], members: reply.slice(1) as string[] }
  }

  async close (): Promise<void> {}

  #keys (topic: string): [string, string, string] {
    const { prefix } = this.#host
    return [`${prefix}:p:${topic}`, `${prefix}:pn:${topic}`, `${prefix}:pt:${topic}`]
  }
}
