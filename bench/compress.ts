// Compressed streams (`npm run bench:compress`). Three parts, all in one run:
// 1. The settings grid, in this process: for each bench stream (price ticks, chat, model tokens; 2,000 events, one
//    write each) and each level and window, the compressed size as a share of the raw one and the CPU per write of
//    the encoder the plugin uses, beside two baselines: each write compressed alone (no history), and a zlib gzip
//    stream kept per connection with a sync flush per event (what a compressing proxy or hapi's PR does), whose
//    memory per stream is measured too.
// 2. Memory per open stream, compressed (gzip, default settings) and not, with BENCH_COMPRESS_CLIENTS streams on
//    a server process (clients in worker processes): RSS and heap after a GC, after 40 events reached every stream.
// 3. Fan-out through the hub: 100,000 deliveries (100 events to 1,000 streams, 10 to 10,000), one event per turn of
//    the event loop; deliveries/s and server CPU per delivery, until every socket took every event. Rounds
//    interleaved, medians; ratios compressed / not.
// Appends its tables to BENCH_RESULTS (default bench/RESULTS.md).
import { spawn } from 'node:child_process'
import { appendFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { constants, createGzip, deflateRawSync } from 'node:zlib'
import { StreamEncoder } from '../lib/compress.js'
import { lines, nextLine, request } from './client.js'
import { frames, STREAM_KINDS } from './compress-streams.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CLIENTS = (process.env.BENCH_COMPRESS_CLIENTS ?? '1000,10000').split(',').map(Number)
/** Events of each bench stream in the settings grid (BENCH_COMPRESS_EVENTS). */
const EVENTS = Number(process.env.BENCH_COMPRESS_EVENTS ?? 2000)
const PER_WORKER = 5000
const SERVER = fileURLToPath(new URL('./compress-server.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./scale-client.js', import.meta.url))
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const sum = (buffers: Buffer[]): number => buffers.reduce((total, buffer) => total + buffer.length, 0)
const kib = (bytes: number): string => (bytes / 1024).toFixed(1)

// 1. The grid.
function cpuUs (work: () => void): number {
  const started = process.cpuUsage()
  work()
  const used = process.cpuUsage(started)
  return used.user + used.system
}

const grid: string[] = ['| stream (avg event) | settings | size / raw | µs per write | bytes kept per stream |', '|---|---|---:|---:|---:|']
for (const kind of STREAM_KINDS) {
  const events = frames(kind, EVENTS)
  const raw = sum(events)
  const label = `${kind} (${Math.round(raw / EVENTS)} B)`
  let alone = 0
  const aloneUs = cpuUs(() => { for (const event of events) alone += deflateRawSync(event, { finishFlush: constants.Z_SYNC_FLUSH }).length })
  grid.push(`| ${label} | each write alone, level 6 | ${(alone / raw).toFixed(3)} | ${(aloneUs / EVENTS).toFixed(1)} | 0 |`)
  for (const level of [1, 6, 9]) {
    for (const window of [1024, 4096, 16384, 32768]) {
      const samples: Array<{ size: number, us: number }> = []
      for (let round = 0; round < ROUNDS; round++) {
        const encoder = new StreamEncoder('gzip', { encodings: ['gzip'], level, window })
        let size = 0
        const us = cpuUs(() => { for (const event of events) size += encoder.encode(event).length })
        samples.push({ size: size + encoder.finish().length, us })
      }
      const us = median(samples.map(sample => sample.us))
      grid.push(`| ${label} | level ${level}, window ${window}${level === 6 && window === 4096 ? ' (default)' : ''} | ${(samples[0].size / raw).toFixed(3)} | ${(us / EVENTS).toFixed(1)} | ${window} |`)
    }
  }
  // A gzip stream per connection, flushed per event: the threadpool's CPU counts too (cpuUsage is per process).
  const live = createGzip({ flush: constants.Z_SYNC_FLUSH })
  let liveSize = 0
  live.on('data', (chunk: Buffer) => { liveSize += chunk.length })
  const started = process.cpuUsage()
  for (const event of events) {
    live.write(event)
    await new Promise(resolve => live.once('data', resolve))
  }
  const used = process.cpuUsage(started)
  live.end()
  grid.push(`| ${label} | a zlib stream per connection (defaults) | ${(liveSize / raw).toFixed(3)} | ${((used.user + used.system) / EVENTS).toFixed(1)} | see below |`)
}

/** RSS per live zlib stream that has had 200 events through it (native memory: not in the heap). */
async function liveStreamMemory (make: () => ReturnType<typeof createGzip>): Promise<number> {
  const count = 1000
  const events = frames('chat', 200)
  globalThis.gc?.()
  const before = process.memoryUsage().rss
  const streams = Array.from({ length: count }, make)
  for (const stream of streams) stream.resume()
  for (const event of events) for (const stream of streams) stream.write(event)
  await Promise.all(streams.map(stream => new Promise<void>(resolve => stream.flush(() => resolve()))))
  globalThis.gc?.()
  const per = (process.memoryUsage().rss - before) / count
  for (const stream of streams) stream.close()
  return per
}
const liveDefault = await liveStreamMemory(() => createGzip({ flush: constants.Z_SYNC_FLUSH }))
const liveSmall = await liveStreamMemory(() => createGzip({ flush: constants.Z_SYNC_FLUSH, windowBits: 10, memLevel: 1, chunkSize: 1024 }))
console.log(grid.join('\n'))
console.log(`a zlib stream per connection: ${kib(liveDefault)} KiB per stream at the defaults, ${kib(liveSmall)} KiB at windowBits 10, memLevel 1`)

// 2 and 3. Streams on a server process.
interface Stats { rss: number, heapUsed: number, streams: number }
interface Published { cpuUs: number, wallMs: number, streams: number }

async function round (mode: 'gzip' | 'identity', clients: number): Promise<Record<string, number>> {
  const server = spawn(process.execPath, ['--expose-gc', SERVER, mode])
  try {
    const port = Number(await nextLine(lines(server)))
    const before = JSON.parse(await request(port, 'GET', '/stats')) as Stats
    const workers = Array.from({ length: Math.ceil(clients / PER_WORKER) }, (_, i) => {
      const count = Math.min(PER_WORKER, clients - i * PER_WORKER)
      const child = spawn(process.execPath, [CLIENT, String(port), String(count), `127.0.0.${2 + i}`, ...(mode === 'gzip' ? ['gzip'] : [])])
      return { child, lines: lines(child) }
    })
    try {
      for (const worker of workers) if (await nextLine(worker.lines) !== 'ready') throw new Error('a client worker failed')
      // 40 price events (110 B each) fill a stream's default window of 4096 bytes.
      const warm = JSON.parse(await request(port, 'POST', '/publish?n=40&kind=prices')) as Published
      if (warm.streams !== clients) throw new Error(`${warm.streams} of ${clients} streams`)
      const open = JSON.parse(await request(port, 'GET', '/stats')) as Stats
      const events = Math.max(10, Math.round(100_000 / clients))
      const fanOut = JSON.parse(await request(port, 'POST', `/publish?n=${events}&kind=prices`)) as Published
      const deliveries = clients * events
      return {
        rssPerStream: (open.rss - before.rss) / clients,
        heapPerStream: (open.heapUsed - before.heapUsed) / clients,
        deliveriesPerSecond: deliveries / (fanOut.wallMs / 1000),
        cpuUsPerDelivery: fanOut.cpuUs / deliveries
      }
    } finally {
      for (const worker of workers) worker.child.kill()
    }
  } finally {
    server.kill()
  }
}

const tables: string[] = []
for (const clients of CLIENTS) {
  const results: Record<string, Record<string, number[]>> = { identity: {}, gzip: {} }
  for (let i = 1; i <= ROUNDS; i++) {
    for (const mode of ['identity', 'gzip'] as const) {
      process.stderr.write(`compress: ${clients} streams, ${mode}, round ${i}\n`)
      for (const [metric, value] of Object.entries(await round(mode, clients))) (results[mode][metric] ??= []).push(value)
    }
  }
  const row = (metric: string, label: string, format: (value: number) => string, better: 'lower' | 'higher'): string => {
    const plain = median(results.identity[metric])
    const compressed = median(results.gzip[metric])
    return `| ${label} (${better} is better) | ${format(plain)} | ${format(compressed)} | ${(compressed / plain).toFixed(2)}× |`
  }
  const bytes = (value: number): string => `${Math.round(value).toLocaleString('en-US')} B`
  tables.push([
    `**${clients.toLocaleString('en-US')} streams**`, '',
    '| metric | uncompressed | gzip (defaults) | gzip / uncompressed |', '|---|---:|---:|---:|',
    row('rssPerStream', 'RSS per open stream', bytes, 'lower'),
    row('heapPerStream', 'heap per open stream', bytes, 'lower'),
    `| memory a compressed stream costs more (RSS) | | ${bytes(median(results.gzip.rssPerStream) - median(results.identity.rssPerStream))} | |`,
    row('deliveriesPerSecond', 'fan-out, deliveries/s', value => Math.round(value).toLocaleString('en-US'), 'higher'),
    row('cpuUsPerDelivery', 'server CPU per delivery', value => `${value.toFixed(2)} µs`, 'lower')
  ].join('\n'))
}
console.log(tables.join('\n\n'))

await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), `
## Compressed streams

Command: \`npm run bench:compress\` (${ROUNDS} interleaved rounds, medians; Node ${process.version}).

Settings grid: ${EVENTS} events of each stream, one write each, through the plugin's encoder (gzip; deflate differs
by its header and trailer only). Size / raw: compressed bytes over raw bytes (lower is better). µs per write: CPU
of this process. Each write alone: no history. A zlib stream per connection: \`createGzip({ flush: Z_SYNC_FLUSH })\`
written one event at a time (CPU includes zlib's threadpool); it keeps ${kib(liveDefault)} KiB per stream at the
defaults and ${kib(liveSmall)} KiB at windowBits 10 / memLevel 1 (RSS of 1,000 after 200 chat events each).

${grid.join('\n')}

Streams on one server process (clients in worker processes, raw sockets that read and discard; compressed
clients send \`Accept-Encoding: gzip\`). Memory after 40 price events reached every stream (so each keeps a full
window), after a GC. Fan-out: 100,000 deliveries of price events (100 to 1,000 streams, 10 to 10,000), one publish
per turn of the event loop, until every socket took every event.

${tables.join('\n\n')}
`)
