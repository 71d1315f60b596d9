// The Redis store's benchmark (`npm run bench:redis`): a redis-server of its own on a free port, so that its CPU is
// ours alone. Side by side in one run: the store's append against a bare `XADD … MAXLEN ~` on the same Redis and
// against the in-memory store; the cost of listening to 100 to 50,000 topics; what an instance sends to and receives
// from Redis per delivered event, and publish-to-delivery latency, at 10 to 10,000 listened topics. Prints a
// markdown table (and appends it to bench/RESULTS.md with BENCH_WRITE=1).
//
// BENCH_REDIS_STORE=<path to a built redis.js> measures another build of the store (an older commit, say);
// BENCH_SECONDS sets how long each rate is measured (3), BENCH_TOPICS_MAX the most topics tried (50,000).
import { appendFile } from 'node:fs/promises'
import { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { Redis } from 'ioredis'
import { MemoryStore } from '../lib/stores/memory.js'
import type { RedisStore as Store } from '../lib/stores/redis.js'
import { redisCpuUs, startRedis } from './redis-server.js'

const { RedisStore } = await import(process.env.BENCH_REDIS_STORE === undefined
  ? '../lib/stores/redis.js'
  : pathToFileURL(process.env.BENCH_REDIS_STORE).href) as { RedisStore: typeof Store }

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
/** Topic counts above this are left out (an older store, whose cost grows with the square of the topics, say). */
const TOPICS_MAX = Number(process.env.BENCH_TOPICS_MAX ?? 50_000)
const PUBLISHERS = 64
const HISTORY = 1000
const EVENT = 'x'.repeat(45)
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** `PUBLISHERS` loops, each awaiting its own append, for SECONDS: appends per second and Redis CPU per append. */
async function publishRate (admin: Redis | undefined, append: (i: number) => Promise<unknown>): Promise<{ rate: number, cpuUs: number }> {
  const cpu = admin === undefined ? 0 : await redisCpuUs(admin)
  const started = performance.now()
  const deadline = started + SECONDS * 1000
  let count = 0
  await Promise.all(Array.from({ length: PUBLISHERS }, async (_, p) => {
    while (performance.now() < deadline) await append(p + PUBLISHERS * count++)
  }))
  const seconds = (performance.now() - started) / 1000
  return { rate: count / seconds, cpuUs: admin === undefined ? 0 : (await redisCpuUs(admin) - cpu) / count }
}

/** The connections to Redis open now. */
function socketsTo (port: number): Socket[] {
  const handles = (process as unknown as { _getActiveHandles: () => unknown[] })._getActiveHandles()
  return handles.filter((handle): handle is Socket => handle instanceof Socket && handle.remotePort === port)
}

const bytesOf = (sockets: Socket[]): number => sockets.reduce((sum, socket) => sum + socket.bytesRead + socket.bytesWritten, 0)

const results: Array<[string, string]> = []
const row = (what: string, value: number, digits = 0): void => {
  const text = value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  results.push([what, text])
  process.stderr.write(`${what}: ${text}\n`)
}

const redis = await startRedis()
const admin = new Redis(redis.url)
try {
  // 1. Publish cost, histories at their bound: 10 topics of 1000 events each first.
  const topics = Array.from({ length: 10 }, (_, i) => `topic${i}`)
  const filler = new RedisStore({ connection: redis.url, prefix: '{bench}', historySize: HISTORY })
  for (let i = 0; i < 10 * HISTORY; i += PUBLISHERS) {
    await Promise.all(Array.from({ length: PUBLISHERS }, (_, j) => filler.append(topics[(i + j) % 10], { data: EVENT })))
  }
  await filler.close()
  const bare = new Redis(redis.url)
  for (let round = 0; round < 2; round++) {
    const store = new RedisStore({ connection: redis.url, prefix: '{bench}', historySize: HISTORY })
    const memory = new MemoryStore({ historySize: HISTORY })
    const xadd = await publishRate(admin, i => bare.xadd(`{bare}:${topics[i % 10]}`, 'MAXLEN', '~', HISTORY, '*', 'd', EVENT))
    const ours = await publishRate(admin, i => store.append(topics[i % 10], { data: EVENT }))
    const mem = await publishRate(undefined, i => memory.append(topics[i % 10], { data: EVENT }))
    if (round === 1) {
      row('bare XADD MAXLEN ~ 1000: appends/s', xadd.rate)
      row('RedisStore append: appends/s', ours.rate)
      row('MemoryStore append: appends/s', mem.rate)
      row('RedisStore vs bare XADD (rate)', ours.rate / xadd.rate, 2)
      row('bare XADD: Redis CPU µs per append', xadd.cpuUs, 1)
      row('RedisStore: Redis CPU µs per append', ours.cpuUs, 1)
    }
    await store.close()
    await memory.close()
  }
  bare.disconnect()

  // 2. Listening to many topics: per-topic cost from 100 to 50,000 (one per user).
  for (const count of [100, 1000, 10_000, 50_000].filter(count => count <= TOPICS_MAX)) {
    const store = new RedisStore({ connection: redis.url, prefix: '{listen}' })
    // Both connections up first: what is timed is the listening alone.
    await store.listen('warm-up', () => {})
    const started = performance.now()
    await Promise.all(Array.from({ length: count }, (_, i) => store.listen(`user:${i}`, () => {})))
    const ms = performance.now() - started
    row(`listen to ${count.toLocaleString('en-US')} topics: ms`, ms)
    row(`listen to ${count.toLocaleString('en-US')} topics: µs per topic`, ms * 1000 / count, 1)
    await store.close()
  }

  // 3. Bytes per delivered event (1,000/s offered) and publish-to-delivery latency (5,000/s), by listened topics.
  for (const count of [10, 1000, 10_000].filter(count => count <= TOPICS_MAX)) {
    for (const rate of [1000, 5000]) {
      const before = new Set(socketsTo(redis.port))
      const store = new RedisStore({ connection: redis.url, prefix: '{live}' })
      const latencies: number[] = []
      let delivered = 0
      await Promise.all(Array.from({ length: count }, (_, i) => store.listen(`user:${i}`, event => {
        delivered++
        latencies.push(performance.now() - Number(event.data))
      })))
      await sleep(200)
      const instance = socketsTo(redis.port).filter(socket => !before.has(socket))
      const publisher = new RedisStore({ connection: redis.url, prefix: '{live}' })
      await publisher.append('warm-up', { data: '0' })
      const bytes = bytesOf(instance)
      const perTick = rate / 100
      let sent = 0
      const started = performance.now()
      while (performance.now() - started < SECONDS * 1000) {
        for (let i = 0; i < perTick; i++) publisher.append(`user:${sent++ % count}`, { data: String(performance.now()) }).catch(() => {})
        await sleep(Math.max(0, started + (sent / rate) * 1000 - performance.now()))
      }
      await sleep(500)
      const used = bytesOf(instance) - bytes
      await store.close()
      latencies.sort((a, b) => a - b)
      const label = `${count.toLocaleString('en-US')} topics, ${rate.toLocaleString('en-US')} events/s`
      if (rate === 1000) row(`${label}: bytes to and from Redis per delivered event (the listening instance)`, used / delivered)
      else {
        row(`${label}: p50 publish-to-delivery ms`, latencies[Math.floor(latencies.length * 0.5)], 2)
        row(`${label}: p99 publish-to-delivery ms`, latencies[Math.floor(latencies.length * 0.99)], 2)
      }
      if (delivered !== sent) row(`${label}: MISSED events`, sent - delivered)
      await publisher.close()
    }
  }
} finally {
  admin.disconnect()
  await redis.stop()
}

const table = ['| measure | value |', '|---|---:|', ...results.map(([what, value]) => `| ${what} | ${value} |`)].join('\n')
process.stdout.write(table + '\n')
if (process.env.BENCH_WRITE === '1') await appendFile(new URL('../../bench/RESULTS.md', import.meta.url), `\n${table}\n`)
