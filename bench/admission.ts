// Admission control under load (`npm run bench:admission`, and part of `npm run bench`). One instance capped at
// BENCH_ADMISSION_CAP open streams (default 5,000) serves a timestamp every 250 ms (BENCH_ADMISSION_PUBLISH_MS) to its streams, while clients each
// try to hold one stream and wait out the Retry-After of a refusal (as this plugin's client and the AI SDK do):
//   at the cap   exactly the cap's number of clients (the baseline)
//   2x the cap   twice that many, so that half of them are refused over and over, for BENCH_ADMISSION_SECONDS (60)
// Rounds interleaved (BENCH_ADMISSION_ROUNDS, 3), medians. Reported: the most streams ever open at once (counted as
// each opens), refusals answered and their p99 answer time, delivery p99 to the admitted streams and its ratio to the
// baseline, event-loop delay p99, and the server alive at the end. Then a reconnect storm: BENCH_ADMISSION_STORM
// clients (10,000) at once against a cap of half that, which is then raised to all of them: how long until all are
// connected. Clients run in worker processes of 1,250 (BENCH_ADMISSION_PER_WORKER), each from 64 loopback addresses of its own;
// at 2x the cap, the clients past the cap start once it is full, in processes of their own. Appends to BENCH_RESULTS.
// BENCH_ADMISSION_BACKLOG sets the server's listen backlog (4096, as the README advises; Node's default is 511); BENCH_ADMISSION_JITTER_MS has the
// clients wait up to that much more than the Retry-After. BENCH_ADMISSION_SERVER_CPUS and BENCH_ADMISSION_CLIENT_CPUS
// (taskset lists, such as 0 and 1) keep the server and the clients on cores of their own, as on separate machines;
// BENCH_ADMISSION_SERVER_NICE (-10, say, as root) runs the server ahead of its clients on the shared cores instead.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { appendFile, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { lines, nextLine, request } from './client.js'

const CAP = Number(process.env.BENCH_ADMISSION_CAP ?? 5000)
const SECONDS = Number(process.env.BENCH_ADMISSION_SECONDS ?? 60)
const ROUNDS = Number(process.env.BENCH_ADMISSION_ROUNDS ?? 3)
const STORM = Number(process.env.BENCH_ADMISSION_STORM ?? 10_000)
// 1,250 clients a process: one process of 5,000 sat at 100% of a core (mostly the kernel's connects and closes) and
// measured its own lag as the server's (refusal p99 208 ms against 61 ms with the same server, in one run each).
const PER_WORKER = Number(process.env.BENCH_ADMISSION_PER_WORKER ?? 1250)
const PUBLISH_MS = Number(process.env.BENCH_ADMISSION_PUBLISH_MS ?? 250)
const SERVER_CPUS = process.env.BENCH_ADMISSION_SERVER_CPUS
const CLIENT_CPUS = process.env.BENCH_ADMISSION_CLIENT_CPUS
const SERVER_NICE = process.env.BENCH_ADMISSION_SERVER_NICE
const SERVER = fileURLToPath(new URL('./admission-server.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./admission-client.js', import.meta.url))

interface Worker { child: ChildProcessWithoutNullStreams, lines: AsyncIterator<string> }
interface Report { connected: number, failures: number, refusals: number, refusalTimes: Histogram, deliveries: number, latencies: Histogram }
/** Samples counted by whole milliseconds. */
type Histogram = Record<string, number>

/** The p99 of every worker's samples together, to the millisecond (the upper edge of its bucket). */
function p99 (histograms: Histogram[]): number {
  const merged = new Map<number, number>()
  let total = 0
  for (const histogram of histograms) {
    for (const [bucket, count] of Object.entries(histogram)) {
      merged.set(Number(bucket), (merged.get(Number(bucket)) ?? 0) + count)
      total += count
    }
  }
  if (total === 0) return 0
  let seen = 0
  for (const bucket of [...merged.keys()].sort((a, b) => a - b)) {
    seen += merged.get(bucket) as number
    if (seen >= total * 0.99) return bucket + 1
  }
  return 0
}
interface Stats { open: number, mostOpen: number, refused: number, eldP99: number, serverRefusalP99: number }

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/**
 * The kernel's count of handshakes it dropped because a listen queue was full (TcpExt ListenOverflows, machine-wide;
 * NaN where /proc/net/netstat is not there): a dropped SYN waits a second for its retransmission, so drops in a
 * round's window show in its refusal times as whole seconds.
 */
async function listenOverflows (): Promise<number> {
  try {
    const lines = (await readFile('/proc/net/netstat', 'utf8')).split('\n').filter(line => line.startsWith('TcpExt:'))
    const names = lines[0].split(/\s+/)
    return Number(lines[1].split(/\s+/)[names.indexOf('ListenOverflows')])
  } catch {
    return NaN
  }
}

/** A Node process, on the given cores when a taskset list is given. */
function node (cpus: string | undefined, args: string[], nice?: string): ChildProcessWithoutNullStreams {
  const command = cpus === undefined ? [process.execPath, ...args] : ['taskset', '-c', cpus, process.execPath, ...args]
  if (nice !== undefined) command.unshift('nice', '-n', nice)
  return spawn(command[0], command.slice(1))
}

async function startServer (cap: number): Promise<{ child: ChildProcessWithoutNullStreams, port: number, stats: () => Promise<Stats> }> {
  // BENCH_NODE_ARGS: extra flags for the server, `--cpu-prof` say.
  const child = node(SERVER_CPUS, [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), SERVER, String(cap)], SERVER_NICE)
  children.add(child)
  child.stderr.pipe(process.stderr)
  const port = Number(await nextLine(lines(child)))
  // A control request may meet a full accept queue in the refusal storm: it is tried again, not the bench's end.
  const stats = async (): Promise<Stats> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return JSON.parse(await request(port, 'GET', '/stats')) as Stats
      } catch (err) {
        if (attempt === 30 || child.exitCode !== null) throw err
        await sleep(100)
      }
    }
  }
  return { child, port, stats }
}

/**
 * The probe: one client, at a higher priority than the load's clients (nice -10, as root), that opens a connection
 * every 20 ms and times its refusal. The load's clients share the two cores with the server and wait for them
 * themselves (a fan-out to 5,000 sockets has them all reading at once); the probe, served first by the scheduler as a
 * client on a machine of its own would be, times the server and the kernel.
 */
function startProbe (port: number): Worker {
  const child = node(undefined, [CLIENT, String(port), '1', '127.2.0', 'probe'], '-10')
  children.add(child)
  return { child, lines: lines(child) }
}

/** `count` clients in processes of PER_WORKER; `first` numbers their source networks after the workers already running. */
function startClients (port: number, count: number, first = 0): Worker[] {
  return Array.from({ length: Math.ceil(count / PER_WORKER) }, (_, i) => {
    const child = node(CLIENT_CPUS, [CLIENT, String(port), String(Math.min(PER_WORKER, count - i * PER_WORKER)), `127.1.${first + i}`])
    children.add(child)
    return { child, lines: lines(child) }
  })
}

async function reports (workers: Worker[]): Promise<Report[]> {
  return await Promise.all(workers.map(async worker => {
    worker.child.stdin.write('report\n')
    return JSON.parse(await nextLine(worker.lines)) as Report
  }))
}

async function until (check: () => Promise<boolean>, ms: number, what: string): Promise<number> {
  const started = performance.now()
  while (!await check()) {
    if (performance.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(100)
  }
  return performance.now() - started
}

async function round (clients: number): Promise<Record<string, number>> {
  const server = await startServer(CAP)
  // The cap's clients first, then the clients past it in processes of their own: the admitted streams live in the
  // same processes in both shapes, as the refused clients of a real server live on other machines. (Mixed in every
  // process, the admitted streams' delivery also measured the refused clients' work in the same event loops.)
  const workers = startClients(server.port, CAP)
  await until(async () => (await server.stats()).open === CAP, 60_000, 'the cap filled')
  if (clients > CAP) workers.push(...startClients(server.port, clients - CAP, workers.length))
  await request(server.port, 'POST', `/publish?ms=${PUBLISH_MS}`)
  const probe = startProbe(server.port)
  await sleep(2000)
  for (const worker of [...workers, probe]) worker.child.stdin.write('reset\n')
  const overflowsBefore = await listenOverflows()
  await server.stats()
  let mostOpen = 0
  let leastOpen = Infinity
  const eld: number[] = []
  const serverRefusal: number[] = []
  // Timed by the clock: a stats request that waits in the accept queue behind the refused clients does not stretch it.
  const ends = performance.now() + SECONDS * 1000
  while (performance.now() < ends) {
    await sleep(1000)
    const stats = await server.stats()
    mostOpen = Math.max(mostOpen, stats.mostOpen)
    leastOpen = Math.min(leastOpen, stats.open)
    eld.push(stats.eldP99)
    serverRefusal.push(stats.serverRefusalP99)
  }
  const all = await reports(workers)
  const [probed] = await reports([probe])
  probe.child.kill()
  const overflows = await listenOverflows() - overflowsBefore
  const alive = server.child.exitCode === null
  for (const worker of workers) worker.child.kill()
  server.child.kill()
  return {
    mostOpen,
    leastOpen,
    refusalsPerSecond: all.reduce((sum, r) => sum + r.refusals, 0) / SECONDS,
    refusalP99: p99(all.map(r => r.refusalTimes)),
    probeP99: p99([probed.refusalTimes]),
    probes: probed.refusals,
    deliveryP99: p99(all.map(r => r.latencies)),
    eldP99: Math.max(...eld),
    serverRefusalP99: Math.max(...serverRefusal),
    failures: all.reduce((sum, r) => sum + r.failures, 0),
    overflows,
    alive: alive ? 1 : 0
  }
}

async function storm (): Promise<Record<string, number>> {
  const cap = Math.floor(STORM / 2)
  const server = await startServer(cap)
  const workers = startClients(server.port, STORM)
  const filled = await until(async () => (await server.stats()).open === cap, 60_000, 'the storm filled the cap')
  await sleep(5000)
  const held = await server.stats()
  await request(server.port, 'POST', `/cap?n=${STORM}`)
  const settled = await until(async () => (await reports(workers)).reduce((sum, r) => sum + r.connected, 0) === STORM, 120_000, 'every client connected')
  const open = (await server.stats()).open
  for (const worker of workers) worker.child.kill()
  server.child.kill()
  return { filledMs: filled, heldOpen: held.mostOpen, settledMs: settled, open }
}

// Children are stopped whatever happens here: an orphaned server and its clients would load the next run.
const children = new Set<ChildProcessWithoutNullStreams>()
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })

const fmt = (value: number): string => value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1)
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const shapes: Array<[string, number]> = [['at the cap', CAP], ['2x the cap', 2 * CAP]]
const results = new Map<string, Array<Record<string, number>>>()
for (let i = 1; i <= ROUNDS; i++) {
  for (const [name, clients] of shapes) {
    process.stderr.write(`admission round ${i}: ${name} (${clients} clients, cap ${CAP}, ${SECONDS} s)\n`)
    results.set(name, [...(results.get(name) ?? []), await round(clients)])
  }
}
const at = (name: string, metric: string): number => median((results.get(name) as Array<Record<string, number>>).map(r => r[metric]))
const table = ['| shape | most open | least open | refusals/s | refusal p99 ms | probe refusal p99 ms (count) | in the server, p99 ms | delivery p99 ms | p99 vs at the cap | loop delay p99 ms | handshakes dropped | errors | alive |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
for (const [name] of shapes) {
  table.push(`| ${name} | ${at(name, 'mostOpen')} | ${at(name, 'leastOpen')} | ${fmt(at(name, 'refusalsPerSecond'))} | ${at(name, 'refusalP99').toFixed(1)} | ${at(name, 'probeP99').toFixed(1)} (${fmt(at(name, 'probes'))}) | ${at(name, 'serverRefusalP99').toFixed(1)} | ` +
    `${at(name, 'deliveryP99').toFixed(1)} | ${(at(name, 'deliveryP99') / at('at the cap', 'deliveryP99')).toFixed(2)}x | ${at(name, 'eldP99').toFixed(1)} | ${fmt(at(name, 'overflows'))} | ${at(name, 'failures')} | ${at(name, 'alive') === 1 ? 'yes' : 'NO'} |`)
}
process.stderr.write(`admission storm: ${STORM} clients, cap ${Math.floor(STORM / 2)} raised to ${STORM}\n`)
const stormResult = await storm()
const stormTable = ['| storm | clients | cap, then | filled in ms | held open | all connected after raise, ms | open at the end |', '|---|---:|---:|---:|---:|---:|---:|',
  `| reconnect storm | ${STORM} | ${Math.floor(STORM / 2)}, then ${STORM} | ${fmt(stormResult.filledMs)} | ${stormResult.heldOpen} | ${fmt(stormResult.settledMs)} | ${stormResult.open} |`]
console.log(table.join('\n') + '\n\n' + stormTable.join('\n'))
await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), `
## Admission control: ${CAP.toLocaleString('en-US')} streams capped, twice as many clients

Command: \`npm run bench:admission\` (BENCH_ADMISSION_CAP=${CAP}, ${SECONDS} s a round, ${ROUNDS} interleaved rounds,
medians). One instance with \`admission: { maxStreams: ${CAP} }\` (the default retry window, 1-10 s) publishes a timestamp every
${PUBLISH_MS} ms to the hub topic its streams subscribe to. Each client holds one stream, waits out the Retry-After of
a 503 and tries again (as this plugin's client and the AI SDK do). Most open: the largest count of open streams at
any stream's opening; refusal p99: connect() to the 503's headers at the client (in the server: request to answer); the
probe's: the same at one client at a higher priority (nice -10) trying every 20 ms, with its count of refusals;
delivery p99: publish to receipt;
"p99 vs at the cap" compares it with the same cap and exactly as many clients. Handshakes dropped: the kernel's
ListenOverflows in the round's window (a dropped SYN is retried after a second). Errors: client sockets that failed.

${table.join('\n')}

${stormTable.join('\n')}
`)
