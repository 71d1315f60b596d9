// The client (fastify-event-stream/client) beside the other clients Node apps use, in one run (`npm run
// bench:client`): the `eventsource` package (EventSource for Node), `eventsource-client`, and the floor (fetch and
// eventsource-parser, no reconnection at all). The server is this plugin with a Redis-backed hub (a redis-server of
// the benchmark's own), in its own process; every client process is separate.
// 1. Reading: one client reads a burst of 100,000 JSON events; events/s and client CPU per event (JSON parse
//    included, as an app would). Rounds interleaved, medians.
// 2. Memory per open client: 2,000 idle clients in one process, RSS and heap after a GC, less the process's own.
// 3. A deploy under load: 5,000 clients (5 processes) on instance A while a publisher instance sends 2 ticks/s;
//    A is stopped (each stream gets a reconnect hint of 1-5 s), nothing listens for 2 s, then instance B starts on
//    the same port. Connection attempts per client, when the last client was back, ticks missed and repeated.
// Appends its tables to BENCH_RESULTS (default bench/RESULTS.md).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { appendFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { lines, nextLine } from './client.js'
import { freePort, startRedis } from './redis-server.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const BURST = Number(process.env.BENCH_CLIENT_BURST ?? 100_000)
const IDLE = Number(process.env.BENCH_CLIENT_IDLE ?? 2000)
const STORM = Number(process.env.BENCH_CLIENT_STORM ?? 5000)
const STORM_WORKERS = 5
/** Two ticks a second: 10,000 deliveries a second to 5,000 clients, which two cores carry beside the clients. */
const TICK_MS = 500
const LIBRARIES = ['ours', 'eventsource', 'eventsource-client', 'floor']
const SERVER = fileURLToPath(new URL('./client-server.js', import.meta.url))
const WORKER = fileURLToPath(new URL('./client-worker.js', import.meta.url))
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const children = new Set<ChildProcessWithoutNullStreams>()
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })

function start (file: string, args: Array<string | number>, flags: string[] = []): { child: ChildProcessWithoutNullStreams, output: AsyncIterator<string> } {
  const child = spawn(process.execPath, [...flags, file, ...args.map(String)])
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.stderr.pipe(process.stderr)
  return { child, output: lines(child) }
}

async function server (port: number, redis: string, prefix: string, publishMs = 0): Promise<ChildProcessWithoutNullStreams> {
  const { child, output } = start(SERVER, [port, redis, prefix, publishMs])
  await nextLine(output)
  return child
}

async function stop (child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null) return
  child.kill(signal)
  await once(child, 'exit')
}

const redis = await startRedis()
const prefix = `{clients-${Date.now()}}`
const port = await freePort()
const base = `http://127.0.0.1:${port}`
const results: string[] = [`## Clients (\`npm run bench:client\`), ${new Date().toISOString().slice(0, 10)}, Node ${process.version}`, '']

// 1. Reading a burst.
const instance = await server(port, redis.url, prefix, TICK_MS)
const bursts = new Map(LIBRARIES.map(library => [library, [] as Array<{ ms: number, cpuUs: number }>]))
// The server encodes the burst on its first request: a warm-up that no library pays for.
await nextLine(start(WORKER, ['floor', 'burst', `${base}/burst?n=${BURST}`, BURST]).output)
for (let round = 0; round < ROUNDS; round++) {
  for (const library of LIBRARIES) {
    const { output } = start(WORKER, [library, 'burst', `${base}/burst?n=${BURST}`, BURST])
    bursts.get(library)?.push(JSON.parse(await nextLine(output)))
  }
}
const read = (library: string): { rate: number, us: number } => {
  const samples = bursts.get(library) ?? []
  return { rate: BURST / median(samples.map(sample => sample.ms)) * 1000, us: median(samples.map(sample => sample.cpuUs)) / BURST }
}
const ours = read('ours')
const floor = read('floor')
results.push(`Reading ${BURST.toLocaleString('en')} JSON events (~90 B each) with one client, medians of ${ROUNDS} interleaved rounds:`, '',
  '| client | events/s | CPU µs per event | events/s vs ours | vs the floor |', '|---|---:|---:|---:|---:|')
for (const library of LIBRARIES) {
  const { rate, us } = read(library)
  results.push(`| ${library} | ${Math.round(rate).toLocaleString('en')} | ${us.toFixed(2)} | ${(rate / ours.rate).toFixed(2)} | ${(rate / floor.rate).toFixed(2)} |`)
}

process.stderr.write('reading: done\n')

// 2. Memory per open client.
results.push('', `Memory per open client, ${IDLE.toLocaleString('en')} clients in one process, after a GC:`, '',
  '| client | RSS per client | heap per client |', '|---|---:|---:|')
for (const library of LIBRARIES) {
  const { child, output } = start(WORKER, [library, 'many', `${base}/events`, IDLE], ['--expose-gc'])
  const before = JSON.parse(await nextLine(output)) as { rss: number, heap: number }
  await nextLine(output)
  await sleep(500)
  child.stdin.write('measure\n')
  const after = JSON.parse(await nextLine(output)) as { rss: number, heap: number }
  results.push(`| ${library} | ${((after.rss - before.rss) / IDLE / 1024).toFixed(1)} KiB | ${((after.heap - before.heap) / IDLE / 1024).toFixed(1)} KiB |`)
  await stop(child, 'SIGKILL')
  process.stderr.write(`memory: ${library}\n`)
}
await stop(instance)

// 3. A deploy under load.
results.push('', `A deploy under load: ${STORM.toLocaleString('en')} clients, 2 ticks/s, instance A stopped (hints of 1-5 s), 2 s with ` +
  'nothing listening, instance B on the same port. "Back" is when the clients were open again, from B\'s start (half of them, 90%, all):', '',
'| client | connection attempts per client (1 is ideal) | back after: 50% / 90% / all | ticks missed | ticks repeated |', '|---|---:|---:|---:|---:|')
const publisher = await server(await freePort(), redis.url, prefix, TICK_MS)
for (const library of LIBRARIES.filter(library => library !== 'floor')) {
  let a = await server(port, redis.url, prefix)
  const workers = Array.from({ length: STORM_WORKERS }, () => start(WORKER, [library, 'many', `${base}/events`, STORM / STORM_WORKERS]))
  for (const { output } of workers) {
    await nextLine(output)
    await nextLine(output)
  }
  const report = async (): Promise<Array<{ open: number, received: number, gaps: number, repeats: number, attempts: number, opened: number[] }>> =>
    await Promise.all(workers.map(async ({ child, output }) => {
      child.stdin.write('report\n')
      return JSON.parse(await nextLine(output))
    }))
  const before = await report()
  process.stderr.write(`deploy: ${library}: ${STORM} open, stopping A\n`)
  await stop(a)
  await sleep(2000)
  a = await server(port, redis.url, prefix)
  const startedB = Date.now()
  let now = await report()
  for (let waited = 0; now.reduce((sum, r) => sum + r.open, 0) < STORM && waited < 60_000; waited += 250) {
    await sleep(250)
    now = await report()
  }
  process.stderr.write(`deploy: ${library}: ${now.reduce((sum, r) => sum + r.open, 0)} back\n`)
  await sleep(2000)
  now = await report()
  const total = (rows: typeof now, key: 'gaps' | 'repeats' | 'attempts'): number => rows.reduce((sum, r) => sum + r[key], 0)
  const open = now.reduce((sum, r) => sum + r.open, 0)
  const back = now.flatMap(r => r.opened).map(at => (at - startedB) / 1000).sort((a, b) => a - b)
  const at = (share: number): string => `${back[Math.min(back.length - 1, Math.floor(back.length * share))].toFixed(1)} s`
  results.push(`| ${library} | ${((total(now, 'attempts') - total(before, 'attempts')) / STORM).toFixed(2)} | ${open < STORM ? `${STORM - open} not back` : `${at(0.5)} / ${at(0.9)} / ${at(1)}`} | ` +
    `${total(now, 'gaps')} | ${total(now, 'repeats')} |`)
  for (const { child } of workers) await stop(child, 'SIGKILL')
  await stop(a)
  process.stderr.write(`deploy: ${library}\n`)
}
await stop(publisher)
await redis.stop()

const text = results.join('\n') + '\n'
process.stdout.write(text)
await appendFile(process.env.BENCH_RESULTS ?? fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)), '\n' + text)
process.exit(0)
