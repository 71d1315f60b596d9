// The scale scenario (`npm run bench:scale`, and the end of `npm run bench`): BENCH_SCALE open streams on one
// instance (default 100,000), ours (hub) against plain node:http, rounds interleaved, medians. Clients run in worker
// processes, each on its own loopback source address (127.0.0.2 and up) for enough ephemeral ports. Reports memory
// per stream (RSS and heap after a GC), the CPU of one heartbeat pass over every stream, the time from one publish
// to its receipt by the last subscriber, and how long closing everything takes. Appends to BENCH_RESULTS (default
// bench/RESULTS.md).
import { spawn } from 'node:child_process'
import { readFile, appendFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { lines, nextLine, request } from './client.js'

const IMPLS = ['ours (hub)', 'node:http']
const REQUESTED = Number(process.env.BENCH_SCALE ?? 100_000)
const ROUNDS = Number(process.env.BENCH_SCALE_ROUNDS ?? 3)
const PER_WORKER = 5000
const HEARTBEAT_MS = 3000
const SERVER = fileURLToPath(new URL('./scale-server.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./scale-client.js', import.meta.url))

/** A process may open this many descriptors; the server needs one per stream, and cannot raise its hard limit here. */
async function descriptorLimit (): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8')
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? 1024)
}

const limit = await descriptorLimit()
const STREAMS = Math.min(REQUESTED, limit - 1000)
if (STREAMS < REQUESTED) {
  process.stderr.write(`scale: ${REQUESTED} streams asked, but a process may open ${limit} descriptors here (hard limit, ` +
    `and no CAP_SYS_RESOURCE to raise it): measuring ${STREAMS}\n`)
}

interface Stats { rss: number, heapUsed: number, streams: number, heartbeat: { passes: number, cpuMs: number, wallMs: number } }
const stats = async (port: number): Promise<Stats> => JSON.parse(await request(port, 'GET', '/stats'))
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function round (impl: string): Promise<Record<string, number>> {
  const server = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=8192', SERVER, impl, String(HEARTBEAT_MS)])
  const serverLines = lines(server)
  const port = Number(await nextLine(serverLines))
  const before = await stats(port)
  const workers = Array.from({ length: Math.ceil(STREAMS / PER_WORKER) }, (_, i) => {
    const count = Math.min(PER_WORKER, STREAMS - i * PER_WORKER)
    const child = spawn(process.execPath, [CLIENT, String(port), String(count), `127.0.0.${2 + i}`])
    return { child, lines: lines(child) }
  })
  for (const worker of workers) if (await nextLine(worker.lines) !== 'ready') throw new Error('a client worker failed')
  const open = await stats(port)
  if (open.streams !== STREAMS) throw new Error(`${open.streams} of ${STREAMS} streams open`)
  // Two heartbeat passes over every open stream; the second one is quoted.
  const passes = open.heartbeat.passes
  while ((await stats(port)).heartbeat.passes < passes + 2) await sleep(200)
  const idle = await stats(port)
  const latencies: number[] = []
  for (let seq = 1; seq <= 5; seq++) {
    const marker = `-${seq}\n`
    for (const worker of workers) worker.child.stdin.write(`watch ${marker.trim()}\n`)
    await sleep(50)
    const sent = performance.now()
    const received = Promise.all(workers.map(async worker => await nextLine(worker.lines)))
    await request(port, 'POST', `/broadcast?seq=${seq}`)
    await received
    latencies.push(performance.now() - sent)
  }
  await request(port, 'POST', '/shutdown')
  const closed = Number((await nextLine(serverLines)).split(' ')[1])
  for (const worker of workers) worker.child.kill()
  latencies.sort((a, b) => a - b)
  return {
    rssPerStream: (idle.rss - before.rss) / STREAMS,
    heapPerStream: (idle.heapUsed - before.heapUsed) / STREAMS,
    heartbeatPassCpuMs: idle.heartbeat.cpuMs,
    publishToLastMs: latencies[2],
    closeMs: closed
  }
}

const results = new Map<string, Map<string, number[]>>()
for (let i = 1; i <= ROUNDS; i++) {
  for (const impl of IMPLS) {
    process.stderr.write(`scale round ${i} ${impl} (${STREAMS} streams)\n`)
    for (const [metric, value] of Object.entries(await round(impl))) {
      if (!results.has(metric)) results.set(metric, new Map())
      const row = results.get(metric) as Map<string, number[]>
      row.set(impl, [...(row.get(impl) ?? []), value])
    }
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const fmt = (value: number): string => value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1)
const table = ['| metric (lower is better) | ours (hub) | node:http | hub vs node:http |', '|---|---:|---:|---:|']
for (const [metric, row] of results) {
  const ours = median(row.get('ours (hub)') as number[])
  const node = median(row.get('node:http') as number[])
  table.push(`| ${metric} | ${fmt(ours)} | ${fmt(node)} | ${(node / ours).toFixed(2)}× |`)
}
console.log(table.join('\n'))
await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), `
## Scale: ${STREAMS.toLocaleString('en-US')} open streams on one instance

Command: \`npm run bench:scale\` (BENCH_SCALE=${REQUESTED}, ${ROUNDS} interleaved rounds, medians). ${STREAMS < REQUESTED
  ? `${REQUESTED.toLocaleString('en-US')} were asked for; a process may open ${limit.toLocaleString('en-US')} descriptors on this machine (a hard limit the benchmark cannot raise without CAP_SYS_RESOURCE), so ${STREAMS.toLocaleString('en-US')} were measured. `
  : ''}Clients in worker processes of ${PER_WORKER} streams, each from its own loopback source address. Memory per
stream: RSS and heap after a GC, all streams open. Heartbeat: CPU milliseconds of one pass that writes a comment to
every stream (${HEARTBEAT_MS} ms interval; node:http runs the same loop with \`res.write()\`). Publish to last: ms from
sending one broadcast (ours: one hub publish) until every client saw it (median of 5). Close: ms for \`app.close()\`
(node:http: ending every response and closing the server). Ratios above 1× mean ours is better.

${table.join('\n')}
`)
