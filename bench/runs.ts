// Runs under load (`npm run bench:runs`, part of `npm run bench`): concurrent runs of a fake model (N tokens at R a
// second, each token stamped when it was made), read by one client each that drops its connection at random moments
// and comes back with its last id to a random instance; beside the plain way, reply.sse() + consume() of the same
// tokens (whose clients cannot drop: a dropped plain stream loses its answer). Every token is counted: lost,
// duplicated, latency from the model to the reader (tokens read live; replayed ones are counted, not timed).
// Scenarios: the plain route, runs in memory (one instance), runs in Redis (two instances, one Redis of its own),
// and runs in Redis at ten times the runs with a tenth of the tokens (the same tokens a second).
// BENCH_RUNS=<runs> BENCH_TOKENS=<tokens> BENCH_RATE=<per second> BENCH_SCALE=<runs of the last scenario> change the sizes.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { EventStreamParser } from '../index.js'
import { lines, nextLine } from './client.js'
import { redisCpuUs, startRedis } from './redis-server.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 1000)
const TOKENS = Number(process.env.BENCH_TOKENS ?? 500)
const RATE = Number(process.env.BENCH_RATE ?? 50)
const SCALE = Number(process.env.BENCH_SCALE ?? 10_000)
/** Drops per reader during its run, at uniformly random moments. */
const DROPS = 2

interface Instance { child: ChildProcessWithoutNullStreams, port: number }

async function startInstance (store: string, prefix: string): Promise<Instance> {
  const child = spawn(process.execPath, [new URL('./run-instance.js', import.meta.url).pathname, store, prefix])
  child.stderr.pipe(process.stderr)
  const line = await nextLine(lines(child))
  return { child, port: Number(line.split(' ')[1]) }
}

function rssKiB (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
}

const now = (): bigint => process.hrtime.bigint() / 1000n

interface Tally { received: number[], latencies: number[], reconnects: number, ended: boolean, failedConnects: number }

/** One reader: POST (starts the run and reads it) or GET /plain, then on each drop a GET with its last id. */
async function reader (instances: Instance[], key: string, plain: boolean, tally: Tally, durationMs: number): Promise<void> {
  let lastEventId = ''
  let drops = plain ? [] : Array.from({ length: DROPS }, () => Math.random() * durationMs).sort((a, b) => a - b)
  const started = Date.now()
  for (let attempt = 0; !tally.ended && attempt < 50; attempt++) {
    const instance = instances[Math.floor(Math.random() * instances.length)]
    const opened = now()
    const path = plain ? `/plain?tokens=${TOKENS}&rate=${RATE}` : `/runs/${key}?tokens=${TOKENS}&rate=${RATE}`
    const method = plain || attempt > 0 ? 'GET' : 'POST'
    await new Promise<void>(resolve => {
      const request = http.request({ host: '127.0.0.1', port: instance.port, method, path, agent: false, headers: lastEventId === '' ? {} : { 'last-event-id': lastEventId } })
      request.on('error', () => { tally.failedConnects++; resolve() })
      request.on('response', response => {
        if (response.statusCode !== 200) { response.resume(); tally.ended = true; resolve(); return }
        const parser = new EventStreamParser(event => {
          if (event.type === 'end') { tally.ended = true; return }
          const [index, stamp] = event.data.split('|')
          tally.received.push(Number(index))
          lastEventId = event.lastEventId
          const made = BigInt(stamp)
          // Tokens made before this connection opened are replayed: counted, not timed.
          if (made >= opened) tally.latencies.push(Number(now() - made))
          if (plain && Number(index) === TOKENS - 1) tally.ended = true
        })
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => parser.feed(chunk))
        let timer: NodeJS.Timeout | undefined
        if (drops.length > 0) {
          timer = setTimeout(() => { tally.reconnects++; response.destroy() }, Math.max(0, drops[0] - (Date.now() - started)))
          drops = drops.slice(1)
        }
        response.on('close', () => { clearTimeout(timer); resolve() })
      })
      request.end()
    })
  }
}

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

interface Result { name: string, runs: number, tokens: number, lost: number, duplicated: number, unfinished: number, reconnects: number, p50: number, p99: number, rssPerRun: number, redisCpuPerToken?: number, redisBytesPerRun?: number, scriptCallsPerToken?: number }

async function scenario (name: string, store: 'memory' | 'redis', count: number, tokens: number, plain: boolean, redis?: { url: string, admin: Redis }): Promise<Result> {
  const prefix = `{bench-runs-${Date.now()}}`
  const instances = store === 'memory' ? [await startInstance('memory', prefix)] : [await startInstance(redis?.url as string, prefix), await startInstance(redis?.url as string, prefix)]
  const rssBefore = instances.reduce((sum, instance) => sum + rssKiB(instance.child.pid as number), 0)
  const cpuBefore = redis === undefined ? 0 : await redisCpuUs(redis.admin)
  const memoryBefore = redis === undefined ? 0 : Number(/used_memory:(\d+)/.exec(await redis.admin.info('memory'))?.[1])
  const callsBefore = redis === undefined ? 0 : scriptCalls(await redis.admin.info('commandstats'))
  const durationMs = tokens / RATE * 1000
  const tallies: Tally[] = Array.from({ length: count }, () => ({ received: [], latencies: [], reconnects: 0, ended: false, failedConnects: 0 }))
  // Readers start over the first second, as requests arrive.
  const readers = tallies.map(async (tally, i) => {
    await sleep(Math.random() * 1000)
    await reader(instances, `run-${i}`, plain, tally, durationMs)
  })
  await sleep(durationMs / 2 + 500)
  const rssMid = instances.reduce((sum, instance) => sum + rssKiB(instance.child.pid as number), 0)
  const memoryMid = redis === undefined ? 0 : Number(/used_memory:(\d+)/.exec(await redis.admin.info('memory'))?.[1])
  await Promise.all(readers)
  let lost = 0
  let duplicated = 0
  for (const tally of tallies) {
    const seen = new Set(tally.received)
    duplicated += tally.received.length - seen.size
    for (let i = 0; i < tokens; i++) if (!seen.has(i)) lost++
  }
  const latencies = tallies.flatMap(tally => tally.latencies).sort((a, b) => a - b)
  const result: Result = {
    name,
    runs: count,
    tokens: count * tokens,
    lost,
    duplicated,
    unfinished: tallies.filter(tally => !tally.ended).length,
    reconnects: tallies.reduce((sum, tally) => sum + tally.reconnects, 0),
    p50: percentile(latencies, 0.5) / 1000,
    p99: percentile(latencies, 0.99) / 1000,
    rssPerRun: (rssMid - rssBefore) / count
  }
  if (redis !== undefined) {
    result.redisCpuPerToken = (await redisCpuUs(redis.admin) - cpuBefore) / (count * tokens)
    result.redisBytesPerRun = (memoryMid - memoryBefore) / count
    result.scriptCallsPerToken = (scriptCalls(await redis.admin.info('commandstats')) - callsBefore) / (count * tokens)
  }
  for (const instance of instances) instance.child.kill('SIGTERM')
  return result
}

function scriptCalls (stats: string): number {
  let calls = 0
  for (const match of stats.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) calls += Number(match[2])
  return calls
}

const redis = await startRedis()
const admin = new Redis(redis.url)
const results: Result[] = []
results.push(await scenario('plain reply.sse() + consume()', 'memory', RUNS, TOKENS, true))
results.push(await scenario('runs, memory store', 'memory', RUNS, TOKENS, false))
results.push(await scenario('runs, Redis, 2 instances', 'redis', RUNS, TOKENS, false, { url: redis.url, admin }))
results.push(await scenario(`runs, Redis, 2 instances, ${SCALE} runs`, 'redis', SCALE, Math.max(1, Math.round(TOKENS * RUNS / SCALE)), false, { url: redis.url, admin }))
admin.disconnect()
await redis.stop()

console.log(`\nRuns: ${RUNS} readers of ${TOKENS} tokens at ${RATE}/s, ${DROPS} random drops per run reader (reconnecting to a random instance)\n`)
console.log('| scenario | runs | tokens | lost | duplicated | unfinished | reconnects | p50 ms | p99 ms | p99 vs plain | RSS KiB per run | Redis µs CPU per token | script calls per token | Redis bytes per run |')
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
const plainP99 = results[0].p99
for (const r of results) {
  const cell = (value: number | undefined, digits = 1): string => value === undefined ? '' : value.toFixed(digits)
  console.log(`| ${r.name} | ${r.runs} | ${r.tokens} | ${r.lost} | ${r.duplicated} | ${r.unfinished} | ${r.reconnects} | ${cell(r.p50)} | ${cell(r.p99)} | ${(r.p99 / plainP99).toFixed(2)}x | ${cell(r.rssPerRun)} | ${cell(r.redisCpuPerToken, 2)} | ${cell(r.scriptCallsPerToken, 3)} | ${cell(r.redisBytesPerRun, 0)} |`)
}
