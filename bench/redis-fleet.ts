// The Redis store at a fleet's scale (`npm run bench:fleet`), against a redis-server of its own, with instances
// (bench/redis-instance.ts) and clients (bench/redis-client.ts) in processes of their own:
//
// - storm: 10,000 streams on one instance, each on its own user's topic and one shared topic, all dropped; while
//   they are away every user gets an event and the shared topic five; then all reconnect with their Last-Event-ID
//   spread over 2 s. Reports the time until every stream has its six missed events, Redis CPU per resume, and that
//   every stream is live afterwards.
// - fleet: four instances, 5,000 subscribers each (a topic per user, and one of four shared topics), publishing
//   through their hubs at rising aggregate rates (a minute at 10,000/s): per step the publishes acknowledged and
//   timed out, the deliveries, what was lost (expected from acknowledged publishes minus received: negative when
//   timed-out publishes were kept after all) or duplicated, p50/p99 publish-to-delivery, and Redis CPU.
//
// - e2e: one instance publishing as fast as it is accepted, 1,000 subscribers on another: deliveries per second
//   against the in-memory store, and socket writes per delivered event (BENCH_PROFILE_DIR: the subscribers'
//   instance writes a CPU profile there).
//
// `node dist/bench/redis-fleet.js [storm|fleet|e2e]` (all by default). BENCH_FLEET_SECONDS shortens the minute;
// BENCH_FLEET_KILL=1 has Redis cut every instance's live connection every 5 s of it. Smaller, for bench:quick:
// BENCH_FLEET_STREAMS (the storm's streams, 10,000), BENCH_FLEET_SUBSCRIBERS (per fleet instance, 5,000),
// BENCH_FLEET_STEP_SECONDS (the fleet's other steps, 10 s).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { RedisStore } from '../lib/stores/redis.js'
import { redisCpuUs, startRedis } from './redis-server.js'

const INSTANCE = fileURLToPath(new URL('./redis-instance.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./redis-client.js', import.meta.url))
const MAIN_SECONDS = Number(process.env.BENCH_FLEET_SECONDS ?? 60)
const STEP_SECONDS = Number(process.env.BENCH_FLEET_STEP_SECONDS ?? 10)
const STORM_STREAMS = Number(process.env.BENCH_FLEET_STREAMS ?? 10_000)
const FLEET_SUBSCRIBERS = Number(process.env.BENCH_FLEET_SUBSCRIBERS ?? 5000)
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** A child process spoken to in lines. */
class Child {
  readonly process: ChildProcessWithoutNullStreams
  readonly #lines: AsyncIterator<string>

  constructor (script: string, args: string[], flags: string[] = []) {
    this.process = spawn(process.execPath, ['--max-old-space-size=4096', ...flags, script, ...args])
    this.process.stderr.pipe(process.stderr)
    this.#lines = readline.createInterface({ input: this.process.stdout })[Symbol.asyncIterator]()
  }

  /** The next line that starts with `word`, without the word. */
  async next (word: string): Promise<string> {
    for (;;) {
      const { value, done } = await this.#lines.next()
      if (done === true) throw new Error(`process ended waiting for ${word}`)
      if (value.startsWith(word)) return value.slice(word.length).trim()
    }
  }

  send (line: string): void {
    this.process.stdin.write(`${line}\n`)
  }
}

interface Report { counts: Record<string, number>, duplicates: number, outOfOrder: number, histogram: number[] }

async function reports (workers: Child[]): Promise<Report> {
  for (const worker of workers) worker.send('report')
  const all = await Promise.all(workers.map(async worker => JSON.parse(await worker.next('report')) as Report))
  const merged: Report = { counts: {}, duplicates: 0, outOfOrder: 0, histogram: new Array<number>(all[0].histogram.length).fill(0) }
  for (const report of all) {
    for (const [topic, count] of Object.entries(report.counts)) merged.counts[topic] = (merged.counts[topic] ?? 0) + count
    merged.duplicates += report.duplicates
    merged.outOfOrder += report.outOfOrder
    report.histogram.forEach((count, ms) => { merged.histogram[ms] += count })
  }
  return merged
}

function percentile (histogram: number[], p: number): number {
  const total = histogram.reduce((sum, count) => sum + count, 0)
  let seen = 0
  for (let ms = 0; ms < histogram.length; ms++) {
    seen += histogram[ms]
    if (seen >= total * p) return ms + 1
  }
  return histogram.length
}

async function startWorkers (ports: number[], perWorker: number, shared: number): Promise<Child[]> {
  const workers = ports.map((port, i) => new Child(CLIENT, [String(port), String(i * perWorker), String(perWorker), String(shared), `127.0.0.${2 + i}`]))
  await Promise.all(workers.map(async worker => await worker.next('ready')))
  return workers
}

const lines: string[] = []
const say = (line: string): void => { lines.push(line); process.stderr.write(`${line}\n`) }

/** One storm against an instance on `store` (a Redis URL, or 'memory' for the floor of the HTTP side). */
async function stormOnce (store: string, admin: Redis, streams: number): Promise<{ resumedMs: number, replayed: number, violations: number, live: number, cpuPerResume: number }> {
  const instance = new Child(INSTANCE, [store, `{storm-${Date.now()}}`])
  const port = Number(await instance.next('ready'))
  const workers = await startWorkers([port, port], streams / 2, 1)
  for (const worker of workers) worker.send('drop')
  await sleep(1000)
  instance.send(`missed ${streams}`)
  await instance.next('missed')
  const before = await reports(workers)
  const cpu = await redisCpuUs(admin)
  for (const worker of workers) worker.send('reconnect 2000 6')
  const resumed = await Promise.all(workers.map(async worker => Number(await worker.next('resumed'))))
  const cpuPerResume = (await redisCpuUs(admin) - cpu) / streams
  const after = await reports(workers)
  instance.send('missed 0')
  await instance.next('missed')
  // Live: five more events on the shared topic reach every stream (50,000 deliveries), given up to 10 s.
  let live = await reports(workers)
  for (let tries = 0; tries < 100 && (live.counts['shared:0'] ?? 0) - (after.counts['shared:0'] ?? 0) < streams * 5; tries++) {
    await sleep(100)
    live = await reports(workers)
  }
  for (const child of [instance, ...workers]) child.process.kill()
  const total = (report: Report): number => Object.values(report.counts).reduce((a, b) => a + b, 0)
  return {
    resumedMs: Math.max(...resumed),
    replayed: total(after) - total(before),
    violations: live.duplicates + live.outOfOrder,
    live: (live.counts['shared:0'] ?? 0) - (after.counts['shared:0'] ?? 0),
    cpuPerResume
  }
}

/** The store alone, without HTTP: 10,000 resumes (listen to both topics, read after the last id) spread over 2 s. */
async function storeStorm (redisUrl: string, streams: number): Promise<number> {
  const prefix = `{store-storm-${Date.now()}}`
  const publisher = new RedisStore({ connection: redisUrl, prefix, timeout: 30_000 })
  const { head } = await publisher.readAfter(['shared:0'], undefined)
  await Promise.all(Array.from({ length: streams }, (_, user) => publisher.append(`user:${user}`, { data: 'missed' })))
  await Promise.all(Array.from({ length: 5 }, () => publisher.append('shared:0', { data: 'missed' })))
  const store = new RedisStore({ connection: redisUrl, prefix, timeout: 30_000 })
  await store.listen('warm-up', () => {})
  const started = Date.now()
  let replayed = 0
  await Promise.all(Array.from({ length: streams }, async (_, user) => {
    await sleep(Math.random() * 2000)
    const topics = [`user:${user}`, 'shared:0']
    await Promise.all(topics.map(async topic => await store.listen(topic, () => {})))
    const { events } = await store.readAfter(topics, String(head))
    replayed += events?.length ?? 0
  }))
  const ms = Date.now() - started
  if (replayed !== streams * 6) throw new Error(`store storm: ${replayed} replayed of ${streams * 6}`)
  await store.close()
  await publisher.close()
  return ms
}

async function storm (redisUrl: string, admin: Redis): Promise<void> {
  const STREAMS = STORM_STREAMS
  const redis = await stormOnce(redisUrl, admin, STREAMS)
  const memory = await stormOnce('memory', admin, STREAMS)
  const storeOnly = await storeStorm(redisUrl, STREAMS)
  const n = (value: number): string => value.toLocaleString('en-US')
  say(`### Reconnect storm: ${n(STREAMS)} streams on one instance (a topic per user + one shared topic), reconnecting over 2 s`)
  say('')
  say('| measure | RedisStore | MemoryStore (one instance: the HTTP side alone) | RedisStore vs MemoryStore |')
  say('|---|---:|---:|---:|')
  say(`| every stream resumed with its 6 missed events, ms after the first reconnect | ${n(redis.resumedMs)} | ${n(memory.resumedMs)} | ${(memory.resumedMs / redis.resumedMs).toFixed(2)}× |`)
  say(`| missed events replayed (of ${n(STREAMS * 6)}) | ${n(redis.replayed)} | ${n(memory.replayed)} | |`)
  say(`| duplicates or out of order | ${redis.violations} | ${memory.violations} | |`)
  say(`| live afterwards: deliveries of five more shared events (of ${n(STREAMS * 5)}) | ${n(redis.live)} | ${n(memory.live)} | |`)
  say(`| Redis CPU per resume (µs) | ${redis.cpuPerResume.toFixed(1)} | – | |`)
  say(`| the store alone (no HTTP): ${n(STREAMS)} resumes spread over 2 s, all done after (ms) | ${n(storeOnly)} | – | |`)
  say('')
}

async function fleet (redisUrl: string, admin: Redis): Promise<void> {
  const INSTANCES = 4
  const PER_INSTANCE = FLEET_SUBSCRIBERS
  const SHARED = 4
  const SHARED_RATE = 4
  const USERS = INSTANCES * PER_INSTANCE
  const instances = Array.from({ length: INSTANCES }, () => new Child(INSTANCE, [redisUrl, '{fleet}']))
  const ports = await Promise.all(instances.map(async instance => Number(await instance.next('ready'))))
  const workers = await startWorkers(ports, PER_INSTANCE, SHARED)
  say(`### A fleet: ${INSTANCES} instances, ${PER_INSTANCE.toLocaleString('en-US')} subscribers each (a topic per user + one of ${SHARED} shared topics), ${SHARED_RATE} shared events/s`)
  say('')
  say('| offered publishes/s | seconds | acknowledged publishes/s | timed out | deliveries/s | expected minus received | duplicated or out of order | p50 ms | p99 ms | Redis CPU |')
  say('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  // A worker's counts add up over its life: each step takes the difference.
  let receivedBefore = 0
  let violationsBefore = 0
  for (const [rate, seconds] of [[2500, STEP_SECONDS], [5000, STEP_SECONDS], [10_000, MAIN_SECONDS], [15_000, STEP_SECONDS], [20_000, STEP_SECONDS]]) {
    const cpu = await redisCpuUs(admin)
    const started = Date.now()
    for (const instance of instances) instance.send(`publish ${rate / INSTANCES} ${seconds} ${USERS} ${SHARED} ${SHARED_RATE / INSTANCES}`)
    // BENCH_FLEET_KILL=1: Redis cuts every instance's live connection every 5 s of the main step.
    const killer = process.env.BENCH_FLEET_KILL === '1' && rate === 10_000
      ? setInterval(() => { admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub').catch(() => {}) }, 5000)
      : undefined
    const published = await Promise.all(instances.map(async instance => JSON.parse(await instance.next('published')) as { counts: Record<string, number>, failed: number }))
    clearInterval(killer)
    const elapsed = (Date.now() - started) / 1000
    await sleep(2000)
    const cpuShare = (await redisCpuUs(admin) - cpu) / ((Date.now() - started) * 1000)
    const report = await reports(workers)
    const topics: Record<string, number> = {}
    let failed = 0
    for (const { counts } of published) for (const [topic, count] of Object.entries(counts)) topics[topic] = (topics[topic] ?? 0) + count
    for (const result of published) failed += result.failed
    let expected = 0
    let publishes = 0
    for (const [topic, count] of Object.entries(topics)) {
      publishes += count
      expected += topic.startsWith('shared:') ? count * USERS / SHARED : count
    }
    const total = Object.values(report.counts).reduce((sum, count) => sum + count, 0)
    const received = total - receivedBefore
    const violations = report.duplicates + report.outOfOrder - violationsBefore
    receivedBefore = total
    violationsBefore += violations
    say(`| ${rate.toLocaleString('en-US')} | ${seconds} | ${Math.round(publishes / elapsed).toLocaleString('en-US')} | ${failed.toLocaleString('en-US')} | ${Math.round(received / elapsed).toLocaleString('en-US')} | ` +
      `${(expected - received).toLocaleString('en-US')} | ${violations} | ${percentile(report.histogram, 0.5)} | ` +
      `${percentile(report.histogram, 0.99)} | ${(cpuShare * 100).toFixed(0)}% |`)
  }
  for (const instance of instances) instance.send('stats')
  const stats = await Promise.all(instances.map(async instance => await instance.next('stats')))
  say('')
  say(`Each instance's store.stats() at the end: ${stats.join(' ')}`)
  say('')
  for (const child of [...instances, ...workers]) child.process.kill()
}

/**
 * End to end: instance A publishes EVENTS to one topic as fast as it is accepted, 1,000 subscribers of it on
 * instance B; against one instance on the in-memory store doing both. Deliveries per second, and the socket writes
 * per delivered event on the subscribers' side (a Redis read's entries go out as one write per subscriber).
 */
async function endToEnd (redisUrl: string): Promise<void> {
  const SUBSCRIBERS = 1000
  const EVENTS = 5000
  const rows: string[] = []
  let memoryRate: number | undefined
  for (const kind of ['memory', 'redis']) {
    const prefix = `{e2e-${Date.now()}}`
    const profile = process.env.BENCH_PROFILE_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROFILE_DIR]
    const subscriberSide = new Child(INSTANCE, [kind === 'memory' ? 'memory' : redisUrl, prefix], kind === 'redis' ? profile : [])
    const publisherSide = kind === 'memory' ? subscriberSide : new Child(INSTANCE, [redisUrl, prefix])
    const port = Number(await subscriberSide.next('ready'))
    if (publisherSide !== subscriberSide) await publisherSide.next('ready')
    const [worker] = await startWorkers([port], SUBSCRIBERS, 1)
    subscriberSide.send('writes')
    const writesBefore = Number(await subscriberSide.next('writes'))
    const started = Date.now()
    publisherSide.send(`flood ${EVENTS} 256 shared:0`)
    const publishMs = Number(await publisherSide.next('flooded'))
    let report = await reports([worker])
    while ((report.counts['shared:0'] ?? 0) < SUBSCRIBERS * EVENTS && Date.now() - started < 120_000) {
      await sleep(50)
      report = await reports([worker])
    }
    const seconds = (Date.now() - started) / 1000
    subscriberSide.send('writes')
    const writes = Number(await subscriberSide.next('writes')) - writesBefore
    const delivered = report.counts['shared:0'] ?? 0
    const rate = delivered / seconds
    memoryRate ??= rate
    rows.push(`| ${kind === 'memory' ? 'MemoryStore (one instance)' : 'RedisStore (publish on A, subscribers on B)'} | ${Math.round(EVENTS / (publishMs / 1000)).toLocaleString('en-US')} | ` +
      `${Math.round(rate).toLocaleString('en-US')} | ${(rate / memoryRate).toFixed(2)}× | ${(delivered / (SUBSCRIBERS * EVENTS) * 100).toFixed(1)}% | ${(writes / delivered).toFixed(3)} | ` +
      `${report.duplicates + report.outOfOrder} |`)
    for (const child of new Set([subscriberSide, publisherSide, worker])) child.process.kill('SIGTERM')
    await sleep(500)
  }
  say(`### End to end: ${EVENTS.toLocaleString('en-US')} events published as fast as accepted (256 at a time), ${SUBSCRIBERS.toLocaleString('en-US')} subscribers`)
  say('')
  say('| store | publishes/s | deliveries/s | deliveries/s vs MemoryStore | delivered | socket writes per delivered event | duplicated or out of order |')
  say('|---|---:|---:|---:|---:|---:|---:|')
  for (const row of rows) say(row)
  say('')
}

const modes = process.argv[2] === undefined ? ['storm', 'fleet', 'e2e'] : [process.argv[2]]
const redis = await startRedis()
const admin = new Redis(redis.url)
try {
  if (modes.includes('storm')) await storm(redis.url, admin)
  if (modes.includes('fleet')) await fleet(redis.url, admin)
  if (modes.includes('e2e')) await endToEnd(redis.url)
} finally {
  admin.disconnect()
  await redis.stop()
}
process.stdout.write(lines.join('\n') + '\n')
