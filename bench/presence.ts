// `npm run bench:presence`: what presence costs Redis, and how long presence() takes. One hub instance in a process
// of its own (bench/hub-instance.ts, the Redis store on the shared Redis, a prefix of its own) holds
// BENCH_PRESENCE_MEMBERS streams on one topic, listed ({ id, info }) or only counted ('count'), or spread over 100
// topics; 10 listed streams on another topic. Measured from Redis itself (INFO commandstats and INFO cpu, before
// and after): the joins, and the instance's renewal (its renewal script for its topics, sent BENCH_PRESENCE_RENEWALS
// times back to back), per renewal and per minute at the default TTL (30 s: a renewal every 10 s, 6 a minute).
// presence() and presenceCount() latency from another instance in this process, for 10 and for all the members.
// Redis memory per member (MEMORY USAGE).
//   BENCH_PRESENCE_MEMBERS (default 10000), BENCH_PRESENCE_RENEWALS (default 2000), BENCH_RESULTS (default
//   bench/RESULTS.md: appends a section)
import { spawn } from 'node:child_process'
import { appendFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import fastifyEventStream from '../index.js'
import { RedisPresenceStore } from '../lib/stores/redis-presence.js'
import { RedisStore } from '../lib/stores/redis.js'
import { lines, nextLine, openMany } from './client.js'

const REDIS = 'redis://127.0.0.1:6379'
const MEMBERS = Number(process.env.BENCH_PRESENCE_MEMBERS ?? 10_000)
const RENEWALS = Number(process.env.BENCH_PRESENCE_RENEWALS ?? 2000)
const TTL = 3000
const DEFAULT_RENEWALS_PER_MINUTE = 6
const redis = new Redis(REDIS)

/** Redis's own accounting: script calls and their µs, and the server's CPU seconds. */
async function redisCost (): Promise<{ calls: number, usec: number, cpu: number }> {
  const commands = await redis.info('commandstats')
  let calls = 0
  let usec = 0
  for (const match of commands.matchAll(/cmdstat_(evalsha|eval):calls=(\d+),usec=(\d+)/g)) {
    calls += Number(match[2])
    usec += Number(match[3])
  }
  const cpu = await redis.info('cpu')
  const used = (name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(cpu)?.[1])
  return { calls, usec, cpu: used('used_cpu_user') + used('used_cpu_sys') }
}

const diff = (a: { calls: number, usec: number, cpu: number }, b: typeof a): typeof a => ({ calls: b.calls - a.calls, usec: b.usec - a.usec, cpu: b.cpu - a.cpu })

type Shape = 'listed, one topic' | 'counted, one topic' | 'listed, 100 topics'
const SHAPES: Shape[] = ['listed, one topic', 'counted, one topic', 'listed, 100 topics']

interface Result { joinUsec: number, renewUsec: number, renewCpuMs: number, bytesPerMember: number, presenceMs: number[], countMs: number[], smallMs: number[] }

async function measure (shape: Shape): Promise<Result> {
  const prefix = `{bench-presence-${process.pid}-${Date.now()}}`
  const child = spawn(process.execPath, [fileURLToPath(new URL('./hub-instance.js', import.meta.url)), REDIS, prefix, String(TTL)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = Number((await nextLine(lines(child as never))).split(' ')[1])
  const app = Fastify()
  const store = new RedisStore({ connection: REDIS, prefix })
  await app.register(fastifyEventStream, { hub: { store, presence: { ttl: TTL } } })
  await app.ready()
  try {
    const topic = (i: number): string => shape === 'listed, 100 topics' ? `room${i % 100}` : 'room'
    const query = (t: string, presence: unknown): string => `/events?q=${encodeURIComponent(JSON.stringify({ topics: [t], presence }))}`
    const small = await openMany(port, i => query('small', { id: `s${i}`, info: { name: `Small ${i}` } }), 10)
    const before = await redisCost()
    const sockets = await openMany(port, i => query(topic(i), shape === 'counted, one topic' ? 'count' : { id: `user-${i}`, info: { name: `User ${i}` } }), MEMBERS)
    while ((await app.eventHub.presenceCount(topic(0))) < (shape === 'listed, 100 topics' ? MEMBERS / 100 : MEMBERS)) await new Promise(resolve => setTimeout(resolve, 50))
    await new Promise(resolve => setTimeout(resolve, 200))
    const joined = diff(before, await redisCost())
    // The renewals: the instance's own renewal script for its topics, sent RENEWALS times back to back (its process
    // renews as well, once a second: a few of the calls counted), measured by Redis.
    const instance = (await redis.hkeys(`${prefix}:pn:${topic(0)}`))[0]
    const topics = new Map<string, number>()
    for (let i = 0; i < (shape === 'listed, 100 topics' ? 100 : 1); i++) topics.set(topic(i), 1)
    const renewer = new RedisPresenceStore({ client: redis, prefix, command: async send => await send() }, instance, TTL)
    const idle = await redisCost()
    for (let i = 0; i < RENEWALS; i++) await renewer.refresh(topics, () => { throw new Error('a topic was lost') })
    const renewed = diff(idle, await redisCost())
    const renewals = RENEWALS
    const bytes = shape === 'counted, one topic' ? 0 : Number(await redis.call('MEMORY', 'USAGE', `${prefix}:p:${topic(0)}`, 'SAMPLES', '0')) * (shape === 'listed, 100 topics' ? 100 : 1)
    const time = async (read: () => Promise<unknown>): Promise<number[]> => {
      const ms: number[] = []
      for (let i = 0; i < 100; i++) {
        const started = performance.now()
        await read()
        ms.push(performance.now() - started)
      }
      return ms.sort((a, b) => a - b)
    }
    const presenceMs = await time(() => app.eventHub.presence(topic(0)))
    const countMs = await time(() => app.eventHub.presenceCount(topic(0)))
    const smallMs = await time(() => app.eventHub.presence('small'))
    for (const s of [...sockets, ...small]) s.socket.destroy()
    return {
      joinUsec: joined.usec / MEMBERS,
      renewUsec: renewed.usec / renewals,
      renewCpuMs: renewed.cpu * 1000 / renewals,
      bytesPerMember: bytes / MEMBERS,
      presenceMs,
      countMs,
      smallMs
    }
  } finally {
    child.kill()
    await app.close()
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
  }
}

const results = new Map<Shape, Result>()
for (const shape of SHAPES) {
  results.set(shape, await measure(shape))
  console.error(`${shape}: ${JSON.stringify({ ...results.get(shape), presenceMs: undefined, countMs: undefined, smallMs: undefined })}`)
}
redis.disconnect()

const q = (ms: number[], p: number): string => ms[Math.min(ms.length - 1, Math.floor(ms.length * p))].toFixed(2)
const members = MEMBERS.toLocaleString('en')
const text = `
## Presence in Redis (\`npm run bench:presence\`, issue 29)

${new Date().toISOString().slice(0, 10)}. One instance in its own process with ${members} streams carrying a presence; Redis's own accounting
(INFO commandstats: script µs; INFO cpu: the server's user+system CPU, network included). The renewal: the instance's own
renewal of its topics sent ${RENEWALS.toLocaleString('en')} times back to back, per renewal, and per minute at the default TTL (30 s: ${DEFAULT_RENEWALS_PER_MINUTE} renewals a minute).
presence() and presenceCount() timed from another instance (100 calls each, in turn): ${members} members, and a topic of 10.

| ${members} streams | join: script µs each | renewal: script µs | renewal: Redis CPU ms | Redis CPU ms per minute (default TTL) | Redis bytes per member | presence() p50 / p99 ms | presenceCount() p50 / p99 ms | presence() of 10 p50 / p99 ms |
|---|---|---|---|---|---|---|---|---|
${SHAPES.map(shape => {
  const r = results.get(shape) as Result
  return `| ${shape} | ${r.joinUsec.toFixed(1)} | ${r.renewUsec.toFixed(0)} | ${r.renewCpuMs.toFixed(2)} | ${(r.renewCpuMs * DEFAULT_RENEWALS_PER_MINUTE).toFixed(1)} | ${r.bytesPerMember === 0 ? '-' : r.bytesPerMember.toFixed(0)} | ${q(r.presenceMs, 0.5)} / ${q(r.presenceMs, 0.99)} | ${q(r.countMs, 0.5)} / ${q(r.countMs, 0.99)} | ${q(r.smallMs, 0.5)} / ${q(r.smallMs, 0.99)} |`
}).join('\n')}
`
process.stdout.write(text)
await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), text)
