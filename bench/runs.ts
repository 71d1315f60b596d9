// Runs under load (`npm run bench:runs`, part of `npm run bench`): concurrent runs of a fake model (N tokens at R a
// second, each token stamped when it was made), read by one client each that drops its connection at random moments
// and comes back with its last id to a random instance; beside the plain way, reply.sse() + consume() of the same
// tokens (whose clients cannot drop: a dropped plain stream loses its answer). Every token is counted: lost,
// duplicated, latency from the model to the reader (tokens made once the reader's connection answered; those made
// while it connected are caught up, counted and not timed; the connection's setup, request to headers, is timed apart).
// Scenarios: the plain route, runs in memory (one instance), runs in Redis (two instances, one Redis of its own),
// and runs in Redis at ten times the runs with a tenth of the tokens (the same tokens a second).
// BENCH_RUNS=<runs> BENCH_TOKENS=<tokens> BENCH_RATE=<per second> BENCH_SCALE=<runs of the last scenario, 0 for none>
// BENCH_DROPS=<drops per reader> BENCH_INSTANCES=<instances on the Redis> change the sizes; BENCH_ONLY=plain2,floor,memory,redis,scale picks scenarios (the plain one always
// runs: the ratios are to it); BENCH_NODE_ARGS is passed to the instances (--cpu-prof, say).
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
const DROPS = Number(process.env.BENCH_DROPS ?? 2)
/** Instances sharing the Redis of the Redis scenarios. */
const REDIS_INSTANCES = Number(process.env.BENCH_INSTANCES ?? 2)

interface Instance { child: ChildProcessWithoutNullStreams, port: number }

async function startInstance (store: string, prefix: string): Promise<Instance> {
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(arg => arg !== '') ?? []
  const child = spawn(process.execPath, [...nodeArgs, new URL('./run-instance.js', import.meta.url).pathname, store, prefix])
  child.stderr.pipe(process.stderr)
  const line = await nextLine(lines(child))
  return { child, port: Number(line.split(' ')[1]) }
}

/** User and system CPU of a process so far, in µs (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuUs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

function rssKiB (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
}

const now = (): bigint => process.hrtime.bigint() / 1000n

interface Tally { received: number[], latencies: number[], connects: number[], reconnects: number, ended: boolean, failedConnects: number }

/** One reader: POST (starts the run and reads it) or GET /plain, then on each drop a GET with its last id. */
interface Shape { tokens: number, rate: number, drops: number }

/** How a reader reads: a plain stream, a run, or the bare Redis floor (a plain stream fed by a channel). */
type Mode = 'plain' | 'run' | 'floor'

async function reader (instances: Instance[], key: string, mode: Mode, tally: Tally, { tokens, rate, drops: dropCount }: Shape): Promise<void> {
  // Neither the plain stream nor the floor can resume: their readers never drop.
  const plain = mode !== 'run'
  let lastEventId = ''
  const durationMs = tokens / rate * 1000
  let drops = plain ? [] : Array.from({ length: dropCount }, () => Math.random() * durationMs).sort((a, b) => a - b)
  const started = Date.now()
  for (let attempt = 0; !tally.ended && attempt < 50; attempt++) {
    const instance = instances[Math.floor(Math.random() * instances.length)]
    const opened = now()
    const source = instances[Math.floor(Math.random() * instances.length)]
    const path = mode === 'plain'
      ? `/plain?tokens=${tokens}&rate=${rate}`
      : mode === 'floor' ? `/floor/${key}?tokens=${tokens}&rate=${rate}&source=${source.port}` : `/runs/${key}?tokens=${tokens}&rate=${rate}`
    const method = plain || attempt > 0 ? 'GET' : 'POST'
    await new Promise<void>(resolve => {
      const request = http.request({ host: '127.0.0.1', port: instance.port, method, path, agent: false, headers: lastEventId === '' ? {} : { 'last-event-id': lastEventId } })
      request.on('error', () => { tally.failedConnects++; resolve() })
      request.on('response', response => {
        // Tokens made before the answer's headers arrived are caught up: counted, not timed (the connection's own
        // setup is timed apart, as `connect`).
        const responded = now()
        tally.connects.push(Number(responded - opened))
        if (response.statusCode !== 200) { response.resume(); tally.ended = true; resolve(); return }
        const parser = new EventStreamParser(event => {
          if (event.type === 'end') { tally.ended = true; return }
          const [index, stamp] = event.data.split('|')
          tally.received.push(Number(index))
          lastEventId = event.lastEventId
          const made = BigInt(stamp)
          if (made >= responded) tally.latencies.push(Number(now() - made))
          // The plain stream stays open after its source ends: the reader leaves.
          if (plain && Number(index) === tokens - 1) {
            tally.ended = true
            response.destroy()
          }
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

interface Result { name: string, runs: number, tokens: number, lost: number, duplicated: number, unfinished: number, reconnects: number, p50: number, p99: number, connectP50: number, connectP99: number, rssPerRun: number, cpuPerToken: number, clientCpuPerToken: number, redisCpuPerToken?: number, redisBytesPerRun?: number, scriptCallsPerToken?: number }

async function scenario (name: string, store: 'memory' | 'redis', count: number, shape: Shape, mode: Mode, redis?: { url: string, admin: Redis }, instanceCount = store === 'memory' ? 1 : REDIS_INSTANCES): Promise<Result> {
  const { tokens, rate } = shape
  const prefix = `{bench-runs-${Date.now()}}`
  const instances: Instance[] = []
  for (let i = 0; i < instanceCount; i++) instances.push(await startInstance(store === 'memory' ? 'memory' : redis?.url as string, prefix))
  const rssBefore = instances.reduce((sum, instance) => sum + rssKiB(instance.child.pid as number), 0)
  const instancesCpu = (): number => instances.reduce((sum, instance) => sum + cpuUs(instance.child.pid as number), 0)
  const cpuInstancesBefore = instancesCpu()
  const cpuClientBefore = process.cpuUsage()
  const cpuBefore = redis === undefined ? 0 : await redisCpuUs(redis.admin)
  const memoryBefore = redis === undefined ? 0 : Number(/used_memory:(\d+)/.exec(await redis.admin.info('memory'))?.[1])
  const callsBefore = redis === undefined ? 0 : scriptCalls(await redis.admin.info('commandstats'))
  const durationMs = tokens / rate * 1000
  const tallies: Tally[] = Array.from({ length: count }, () => ({ received: [], latencies: [], connects: [], reconnects: 0, ended: false, failedConnects: 0 }))
  // Readers start over the first second, as requests arrive.
  const readers = tallies.map(async (tally, i) => {
    await sleep(Math.random() * 1000)
    await reader(instances, `run-${i}`, mode, tally, shape)
  })
  await sleep(durationMs / 2 + 500)
  const rssMid = instances.reduce((sum, instance) => sum + rssKiB(instance.child.pid as number), 0)
  const memoryMid = redis === undefined ? 0 : Number(/used_memory:(\d+)/.exec(await redis.admin.info('memory'))?.[1])
  await Promise.all(readers)
  const cpuInstances = instancesCpu() - cpuInstancesBefore
  const cpuClient = process.cpuUsage(cpuClientBefore)
  let lost = 0
  let duplicated = 0
  for (const tally of tallies) {
    const seen = new Set(tally.received)
    duplicated += tally.received.length - seen.size
    for (let i = 0; i < tokens; i++) if (!seen.has(i)) lost++
  }
  const latencies = tallies.flatMap(tally => tally.latencies).sort((a, b) => a - b)
  const connects = tallies.flatMap(tally => tally.connects).sort((a, b) => a - b)
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
    connectP50: percentile(connects, 0.5) / 1000,
    connectP99: percentile(connects, 0.99) / 1000,
    rssPerRun: (rssMid - rssBefore) / count,
    cpuPerToken: cpuInstances / (count * tokens),
    clientCpuPerToken: (cpuClient.user + cpuClient.system) / (count * tokens)
  }
  if (redis !== undefined) {
    result.redisCpuPerToken = (await redisCpuUs(redis.admin) - cpuBefore) / (count * tokens)
    result.redisBytesPerRun = (memoryMid - memoryBefore) / count
    result.scriptCallsPerToken = (scriptCalls(await redis.admin.info('commandstats')) - callsBefore) / (count * tokens)
  }
  for (const instance of instances) instance.child.kill('SIGTERM')
  console.error(`${name}: done`)
  return result
}

function scriptCalls (stats: string): number {
  let calls = 0
  for (const match of stats.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) calls += Number(match[2])
  return calls
}

const redis = await startRedis()
const admin = new Redis(redis.url)
console.log(`\nRuns: ${RUNS} readers of ${TOKENS} tokens at ${RATE}/s, ${DROPS} random drops per run reader (reconnecting to a random instance)\n`)
console.log('| scenario | runs | tokens | lost | duplicated | unfinished | reconnects | p50 ms | p99 ms | p99 vs plain | connect p50 / p99 ms | RSS KiB per run | instances µs CPU per token | client µs CPU per token | Redis µs CPU per token | script calls per token | Redis bytes per run |')
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
let plainP99 = NaN
function print (r: Result): void {
  const cell = (value: number | undefined, digits = 1): string => value === undefined ? '' : value.toFixed(digits)
  console.log(`| ${r.name} | ${r.runs} | ${r.tokens} | ${r.lost} | ${r.duplicated} | ${r.unfinished} | ${r.reconnects} | ${cell(r.p50)} | ${cell(r.p99)} | ${(r.p99 / plainP99).toFixed(2)}x | ${cell(r.connectP50)} / ${cell(r.connectP99)} | ${cell(r.rssPerRun)} | ${cell(r.cpuPerToken, 2)} | ${cell(r.clientCpuPerToken, 2)} | ${cell(r.redisCpuPerToken, 2)} | ${cell(r.scriptCallsPerToken, 3)} | ${cell(r.redisBytesPerRun, 0)} |`)
}
// BENCH_ONLY=plain2,floor,memory,redis,scale runs some of them.
const only = process.env.BENCH_ONLY?.split(',')
const wanted = (name: string): boolean => only === undefined || only.includes(name)
const shape: Shape = { tokens: TOKENS, rate: RATE, drops: DROPS }
const plain = await scenario('plain reply.sse() + consume()', 'memory', RUNS, shape, 'plain')
plainP99 = plain.p99
print(plain)
// The plain route on as many instances as the Redis scenario (clients spread over them): the same processes, less Redis.
if (wanted('plain2')) print(await scenario(`plain reply.sse() + consume(), ${REDIS_INSTANCES} instances`, 'memory', RUNS, shape, 'plain', undefined, REDIS_INSTANCES))
// The floor of anything delivered through Redis: each token PUBLISHed as it is made, on an instance drawn at random,
// to the channel the reader's instance subscribed to (bare ioredis), and written to the stream as it arrives.
if (wanted('floor')) print(await scenario(`floor: bare PUBLISH per token, ${REDIS_INSTANCES} instances`, 'redis', RUNS, shape, 'floor', { url: redis.url, admin }))
if (wanted('memory')) print(await scenario('runs, memory store', 'memory', RUNS, shape, 'run'))
if (wanted('redis')) print(await scenario(`runs, Redis, ${REDIS_INSTANCES} instance${REDIS_INSTANCES === 1 ? '' : 's'}`, 'redis', RUNS, shape, 'run', { url: redis.url, admin }))
// The same tokens a second and the same length over SCALE runs (each a tenth as fast at the defaults), readers that
// stay connected: what a run costs in memory and Redis at that count (BENCH_SCALE=0 leaves it out).
const scaled: Shape = { tokens: Math.max(1, Math.round(TOKENS * RUNS / SCALE)), rate: RATE * RUNS / SCALE, drops: 0 }
if (SCALE > 0 && wanted('scale')) print(await scenario(`runs, Redis, ${REDIS_INSTANCES} instances, ${SCALE} runs, no drops`, 'redis', SCALE, scaled, 'run', { url: redis.url, admin }))
admin.disconnect()
await redis.stop()
