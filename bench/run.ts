// `npm run bench`: every implementation in its own server process on loopback, the same routes, rounds interleaved
// (A B C … A B C …), medians, and the ratio of ours to each other one. Writes bench/RESULTS.md.
//   BENCH_ROUNDS (default 3), BENCH_CLIENTS (default "1000,10000"), BENCH_BURST (default 100000),
//   BENCH_IMPLS (default all: a comma-separated subset, for a quick look while working), BENCH_RESULTS (a file to
//   write instead of bench/RESULTS.md), BENCH_SCENARIOS (a subset of burst,fan-out,batches,idle)
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { open, openMany, request } from './client.js'

const FLOOR = 'node:http (socket)'
/** ours broadcasting with a loop of stream.message(): in the batch scenarios only. */
const MESSAGE = 'ours (message)'
/** The hub with the Prometheus metrics on and scraped: compared with the hub, in fan-out and batches. */
const METRICS = 'ours (hub+metrics)'
/**
 * Typed JSON events of about 200 bytes, sent and broadcast (the hub's send()) with JSON.stringify() or the compiled
 * schema: in the burst, and in fan-out as a batch awaited in a loop.
 */
const JSON_SEND = 'ours (send json)'
const SCHEMA_SEND = 'ours (send schema)'
const ALL = ['ours', 'ours (hub)', METRICS, MESSAGE, 'node:http', FLOOR, '@fastify/sse', 'fastify-sse-v2', 'better-sse', JSON_SEND, SCHEMA_SEND]
const IMPLS = process.env.BENCH_IMPLS === undefined ? ALL : ALL.filter(impl => (process.env.BENCH_IMPLS as string).split(',').includes(impl))
/** The hub's burst is the core's: it is measured in fan-out and idle only. */
const HUB = 'ours (hub)'
const OTHERS = IMPLS.filter(impl => impl !== 'ours' && impl !== HUB && impl !== MESSAGE && impl !== METRICS && impl !== JSON_SEND && impl !== SCHEMA_SEND)
/** The hub against the two plain servers (res.write() and the pre-framed socket floor) and the message() loop. */
const HUB_VERSUS = ['node:http', FLOOR, MESSAGE]
/** The batch scenarios: ours, the hub, the message() loop and the two plain servers. */
const BATCH_IMPLS = ['ours', HUB, METRICS, MESSAGE, 'node:http', FLOOR]
/** Events per batch, and batches per measurement. */
const BATCH = 100
const BATCHES = 3
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CLIENTS = (process.env.BENCH_CLIENTS ?? '1000,10000').split(',').map(Number)
/** BENCH_SCENARIOS: a comma-separated subset of burst, fan-out, batches, idle (default all). */
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? 'burst,fan-out,batches,idle').split(',')
const BURST = Number(process.env.BENCH_BURST ?? 100_000)
const BROADCASTS = 20
const SERVER = fileURLToPath(new URL('./server.js', import.meta.url))

interface Server { port: number, stop: () => void }
interface Stats { rss: number, heapUsed: number, cpu: number, subscribers: number }

async function start (impl: string): Promise<Server> {
  // BENCH_NODE_ARGS: extra flags for the servers, `--cpu-prof` say.
  const flags = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []
  const child = spawn(process.execPath, ['--expose-gc', ...flags, SERVER, impl], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>(resolve => child.stdout.once('data', data => resolve(Number(String(data).trim()))))
  return { port, stop: () => child.kill() }
}

const stats = async (port: number): Promise<Stats> => JSON.parse(await request(port, 'GET', '/stats'))

async function until (check: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await check())) await new Promise(resolve => setTimeout(resolve, 20))
}

/** One client, BURST events: events per second, and server CPU seconds per million events. */
async function burst (server: Server): Promise<Record<string, number>> {
  const before = await stats(server.port)
  const started = performance.now()
  const { socket, counter } = await open(server.port, `/burst?n=${BURST}`)
  await new Promise<void>(resolve => { counter.onFrames = () => { if (counter.ended) resolve() } })
  const seconds = (performance.now() - started) / 1000
  socket.destroy()
  if (counter.frames < BURST) throw new Error(`burst: ${counter.frames} of ${BURST} events`)
  const after = await stats(server.port)
  return { eventsPerSecond: BURST / seconds, cpuPerMillion: (after.cpu - before.cpu) / BURST * 1e6 }
}

/**
 * `clients` subscribers, `rounds` rounds of `count` events to all: each round's events in one tick (`tick`), in a
 * loop that awaits each (`awaited`: the hub's publish(); the others broadcast synchronously, so it is their tick),
 * each in its own macrotask (`spread`), or in one tick while every hundredth client has stopped reading (`mixed`,
 * measured at the others). Deliveries per second, p50/p99 from the request to the last reader's last event of a
 * round, server CPU per delivery.
 */
type Mode = 'tick' | 'awaited' | 'spread' | 'mixed'
const MODES: Record<Mode, string> = { tick: 'in one tick', awaited: 'awaited in a loop', spread: 'one per tick', mixed: 'in one tick, 1% stalled' }

async function fanout (server: Server, clients: number, count = 1, rounds = BROADCASTS, mode: Mode = 'tick'): Promise<Record<string, number>> {
  const sockets = await openMany(server.port, '/subscribe', clients)
  await until(async () => (await stats(server.port)).subscribers === clients && sockets.every(s => s.counter.headers))
  await new Promise(resolve => setTimeout(resolve, 100))
  const stalled = mode === 'mixed' ? sockets.filter((_, i) => i % 100 === 0) : []
  for (const s of stalled) s.socket.pause()
  const readers = sockets.filter(s => !stalled.includes(s))
  const before = await stats(server.port)
  const latencies: number[] = []
  const started = performance.now()
  for (let round = 1; round <= rounds; round++) {
    const base = readers.map(s => s.counter.frames)
    let reached = 0
    const all = new Promise<void>(resolve => {
      readers.forEach((s, i) => {
        let done = false
        s.counter.onFrames = () => {
          if (done || s.counter.frames - base[i] < count) return
          done = true
          if (++reached === readers.length) resolve()
        }
      })
    })
    const sent = performance.now()
    await request(server.port, 'POST', `/broadcast?seq=${round * 1000}&count=${count}&spread=${mode === 'spread' ? 1 : 0}&awaited=${mode === 'awaited' ? 1 : 0}`)
    await all
    latencies.push(performance.now() - sent)
  }
  const seconds = (performance.now() - started) / 1000
  const after = await stats(server.port)
  for (const s of sockets) s.socket.destroy()
  await until(async () => (await stats(server.port)).subscribers === 0)
  latencies.sort((a, b) => a - b)
  const deliveries = readers.length * count * rounds
  return {
    deliveriesPerSecond: deliveries / seconds,
    p50: latencies[Math.floor(latencies.length * 0.5)],
    p99: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))],
    cpuPerMillion: (after.cpu - before.cpu) / deliveries * 1e6
  }
}

/** A fresh server, `clients` idle streams: memory per stream and connections per second. */
async function idle (impl: string, clients: number): Promise<Record<string, number>> {
  const server = await start(impl)
  try {
    const before = await stats(server.port)
    const started = performance.now()
    const sockets = await openMany(server.port, '/subscribe', clients)
    await until(async () => (await stats(server.port)).subscribers === clients)
    const seconds = (performance.now() - started) / 1000
    const after = await stats(server.port)
    for (const s of sockets) s.socket.destroy()
    return {
      rssPerStream: (after.rss - before.rss) / clients,
      heapPerStream: (after.heapUsed - before.heapUsed) / clients,
      connectsPerSecond: clients / seconds
    }
  } finally {
    server.stop()
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const results = new Map<string, Map<string, number[]>>()
function record (scenario: string, impl: string, metrics: Record<string, number>): void {
  for (const [metric, value] of Object.entries(metrics)) {
    const key = `${scenario} ${metric}`
    if (!results.has(key)) results.set(key, new Map())
    const row = results.get(key) as Map<string, number[]>
    row.set(impl, [...(row.get(impl) ?? []), value])
  }
}

const servers = new Map<string, Server>()
for (const impl of IMPLS) servers.set(impl, await start(impl))
for (let round = 1; round <= ROUNDS; round++) {
  for (const impl of IMPLS) {
    const server = servers.get(impl) as Server
    process.stderr.write(`round ${round} ${impl}\n`)
    if (impl === JSON_SEND || impl === SCHEMA_SEND) {
      if (SCENARIOS.includes('burst')) record('burst of 200-byte JSON events', impl, await burst(server))
      // Fan-out as users write it: a loop that awaits each send(); serialization is once per publish.
      if (SCENARIOS.includes('fan-out')) {
        for (const clients of CLIENTS) record(`${BATCH} 200-byte JSON events awaited in a loop ${clients}`, impl, await fanout(server, clients, BATCH, BATCHES, 'awaited'))
      }
      continue
    }
    // The burst is the core's for the hub and the message() loop, and res.write()'s for the floor (which differs in
    // broadcasts only); the message() loop differs from ours in broadcasts of batches only.
    if (SCENARIOS.includes('burst') && impl !== HUB && impl !== FLOOR && impl !== MESSAGE && impl !== METRICS) record('burst', impl, await burst(server))
    if (SCENARIOS.includes('fan-out') && impl !== MESSAGE) for (const clients of CLIENTS) record(`fan-out ${clients}`, impl, await fanout(server, clients))
    if (SCENARIOS.includes('batches') && BATCH_IMPLS.includes(impl)) {
      for (const mode of Object.keys(MODES) as Mode[]) {
        for (const clients of CLIENTS) record(`${BATCH} events ${MODES[mode]} ${clients}`, impl, await fanout(server, clients, BATCH, BATCHES, mode))
      }
    }
    if (SCENARIOS.includes('idle') && impl !== MESSAGE && impl !== METRICS) record(`idle ${CLIENTS.at(-1)}`, impl, await idle(impl, CLIENTS.at(-1) as number))
  }
}
for (const server of servers.values()) server.stop()

const LOWER_IS_BETTER = /p50|p99|cpu|PerStream/
const fmt = (value: number): string => Number.isNaN(value) ? '–' : value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(2)
const ratio = (value: number): string => Number.isNaN(value) ? '–' : `${value.toFixed(2)}×`
const WITH_METRICS = IMPLS.includes(METRICS) ? ['metrics on vs off (hub)'] : []
const WITH_SCHEMA = IMPLS.includes(SCHEMA_SEND) && IMPLS.includes(JSON_SEND) ? ['schema vs JSON.stringify'] : []
const columns = [...IMPLS, ...OTHERS.map(impl => `ours vs ${impl}`), ...HUB_VERSUS.map(impl => `hub vs ${impl}`), ...WITH_METRICS, ...WITH_SCHEMA]
const lines = [`| scenario / metric | ${columns.join(' | ')} |`, `|---|${columns.map(() => '---:').join('|')}|`]
for (const [key, row] of results) {
  const medianOf = (impl: string): number => median(row.get(impl) ?? [NaN])
  const lower = LOWER_IS_BETTER.test(key)
  // Ratios read "how many times better the first is": above 1 means it leads, whatever the metric's direction.
  const better = (a: number, b: number): number => lower ? b / a : a / b
  const ratios = [...OTHERS.map(other => better(medianOf('ours'), medianOf(other))), ...HUB_VERSUS.map(other => better(medianOf(HUB), medianOf(other))),
    ...WITH_METRICS.map(() => better(medianOf(METRICS), medianOf(HUB))), ...WITH_SCHEMA.map(() => better(medianOf(SCHEMA_SEND), medianOf(JSON_SEND)))]
  lines.push(`| ${key} (${lower ? 'lower' : 'higher'} is better) | ${IMPLS.map(impl => fmt(medianOf(impl))).join(' | ')} | ${ratios.map(ratio).join(' | ')} |`)
}
const table = lines.join('\n')
console.log(table)
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`
// BENCH_RESULTS: write the table elsewhere (a before/after comparison, say) instead of bench/RESULTS.md.
await writeFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), `# Benchmark results

Machine: ${machine}. Node ${process.version}. Date: ${new Date().toISOString().slice(0, 10)}.
Command: \`npm run bench\` (BENCH_ROUNDS=${ROUNDS}, clients ${CLIENTS.join(' and ')}, burst ${BURST} events, ${BROADCASTS} broadcasts per fan-out).

Each implementation runs in its own server process on loopback with the same routes (\`bench/server.ts\`); rounds are
interleaved and each cell is the median of ${ROUNDS}. Ratios read "how many times better ours is" (above 1× ours
leads), for every metric whatever its direction. \`ours\` broadcasts with \`encodeMessage()\` and \`stream.write()\` to
the streams it tracks; \`ours (hub)\` publishes each broadcast to a hub topic (kept in the in-memory history, encoded
once, written to every subscriber). \`node:http\` writes one shared Buffer per broadcast with \`res.write()\`;
\`node:http (socket)\` is the floor: each broadcast framed once as an HTTP chunk and that buffer written straight to
every socket. The last two columns compare the hub with both. \`ours (send json)\` and \`ours (send schema)\` send typed events of
about 200 bytes (an order) with \`stream.send()\` in the burst and the hub's \`send()\` awaited in a loop, serialized by
\`JSON.stringify()\` or by the events' schemas compiled with fast-json-stringify (\`schema.events\`, \`hub.events\`);
the last column compares the two. Units: events or deliveries per second; p50/p99 in ms from sending
a broadcast to its receipt by the last client; CPU in server user+system seconds per million events or deliveries;
memory in bytes per open stream (RSS and heap after a GC); connects per second until every stream is open.

${table}
`)
