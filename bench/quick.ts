// `npm run bench:quick`: every scenario of every bench file, smaller, in one run of under ten minutes on two cores,
// for the before and after of a change to a hot path. Each bench runs as `npm run bench` runs it, with fewer clients,
// events, rounds and seconds (the sizes below); each still measures its own baselines in the same run (node:http
// and the pre-framed socket floor, a bare XADD, the in-memory store, the uncompressed stream, the floor client, the
// plain route). Prints one table: every ratio those benches print, each against the baseline its column names,
// with the part's time; BENCH_QUICK_RESULTS=<file> also writes it there. BENCH_QUICK_ONLY=run,compress,… picks parts.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

interface Part {
  readonly name: string
  readonly script: string
  readonly env: Record<string, string>
  readonly node?: string[]
}

const PARTS: Part[] = [
  // Burst, fan-out, batches (in one tick, awaited in a loop, one per tick, with stalled clients) and idle streams.
  { name: 'run', script: 'run.js', env: { BENCH_ROUNDS: '3', BENCH_CLIENTS: '1000', BENCH_BURST: '100000', BENCH_IMPLS: 'ours,ours (hub),ours (hub+metrics),ours (message),node:http,node:http (socket),ours (send json),ours (send schema)' } },
  { name: 'serialize', script: 'serialize.js', env: { BENCH_ROUNDS: '3', BENCH_SERIALIZE_EVENTS: '300000' } },
  { name: 'scale', script: 'scale.js', env: { BENCH_SCALE: '2000', BENCH_SCALE_ROUNDS: '1' } },
  { name: 'redis', script: 'redis.js', env: { BENCH_SECONDS: '1', BENCH_TOPICS_MAX: '1000' } },
  { name: 'redis-fleet', script: 'redis-fleet.js', env: { BENCH_FLEET_STREAMS: '1000', BENCH_FLEET_SUBSCRIBERS: '500', BENCH_FLEET_SECONDS: '3', BENCH_FLEET_STEP_SECONDS: '2' } },
  { name: 'compress', script: 'compress.js', node: ['--expose-gc'], env: { BENCH_ROUNDS: '1', BENCH_COMPRESS_CLIENTS: '1000', BENCH_COMPRESS_EVENTS: '500' } },
  { name: 'client-read', script: 'client-read.js', env: { BENCH_ROUNDS: '1', BENCH_CLIENT_BURST: '20000', BENCH_CLIENT_IDLE: '500', BENCH_CLIENT_STORM: '500' } },
  { name: 'runs', script: 'runs.js', env: { BENCH_RUNS: '200', BENCH_TOKENS: '100', BENCH_SCALE: '1000' } },
  { name: 'admission', script: 'admission.js', env: { BENCH_ADMISSION_CAP: '1000', BENCH_ADMISSION_SECONDS: '10', BENCH_ADMISSION_ROUNDS: '1', BENCH_ADMISSION_STORM: '2000' } },
  // Filtered fan-out against the unfiltered one (awaited in a loop, and one per tick), and presence in Redis.
  { name: 'filter', script: 'filter.js', env: { BENCH_ROUNDS: '1', BENCH_FILTER_SUBSCRIBERS: '5000', BENCH_FILTER_BASE: '500' } },
  { name: 'presence', script: 'presence.js', env: { BENCH_PRESENCE_MEMBERS: '2000', BENCH_PRESENCE_RENEWALS: '500' } }
]

const only = process.env.BENCH_QUICK_ONLY?.split(',')
const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-quick-'))

/** Runs one part; resolves with what it printed (stdout, stderr) and wrote, and how long it took. */
async function run (part: Part): Promise<{ texts: string[], seconds: number }> {
  const results = path.join(dir, `${part.name}.md`)
  const started = performance.now()
  const child = spawn(process.execPath, [...(part.node ?? []), fileURLToPath(new URL(`./${part.script}`, import.meta.url))], {
    env: { ...process.env, ...part.env, BENCH_RESULTS: results },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  // Progress and the benches' own tables (some print them on stderr) go to the terminal and to the parse.
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk
    process.stderr.write(chunk)
  })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  if (code !== 0) throw new Error(`bench ${part.name} exited with ${String(code)}`)
  return { texts: [out, err, await readFile(results, 'utf8').catch(() => '')], seconds: (performance.now() - started) / 1000 }
}

/**
 * The ratios of a bench's markdown tables: every cell of the form `1.23×` (or `x`), and every number in a column or
 * a row whose name compares (`… vs …`, `a / b`), named by its row's first cell and its column's header; a table
 * printed twice (to the terminal and to its file) counts once.
 */
function ratios (texts: string[]): Array<[string, string, string]> {
  const found = new Map<string, [string, string, string]>()
  let header: string[] = []
  for (const line of texts.join('\n').split('\n')) {
    if (!line.startsWith('|')) {
      header = []
      continue
    }
    const cells = line.split('|').slice(1, -1).map(cell => cell.trim())
    if (cells.every(cell => /^-*:?-*:?$/.test(cell))) continue
    if (header.length === 0) {
      header = cells
      continue
    }
    cells.forEach((cell, i) => {
      const compares = /\bvs\b| \/ /
      const ratio = /^\d[\d,.]*[×x]$/.test(cell) || (/^\d[\d,.]*$/.test(cell) && (compares.test(header[i] ?? '') || compares.test(cells[0])))
      if (i > 0 && ratio) found.set(`${cells[0]}\n${header[i]}`, [cells[0], header[i], cell])
    })
  }
  return [...found.values()]
}

const rows = ['| bench | scenario / metric | ratio | value |', '|---|---|---|---:|']
const started = performance.now()
try {
  for (const part of PARTS) {
    if (only !== undefined && !only.includes(part.name)) continue
    process.stderr.write(`## ${part.name}\n`)
    const { texts, seconds } = await run(part)
    rows.push(`| ${part.name} (${seconds.toFixed(0)} s) | | | |`)
    for (const [row, column, value] of ratios(texts)) rows.push(`| | ${row} | ${column} | ${value} |`)
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const table = `Quick bench, ${new Date().toISOString()}, Node ${process.version}, ${((performance.now() - started) / 60_000).toFixed(1)} minutes. ` +
  'Ratios read "how many times better ours is" unless the column says otherwise.\n\n' + rows.join('\n') + '\n'
process.stdout.write(table)
if (process.env.BENCH_QUICK_RESULTS !== undefined) await writeFile(process.env.BENCH_QUICK_RESULTS, table)
