// `npm run bench:filter`: the hub's filtered fan-out against an unfiltered one, in one run, rounds interleaved.
//   unfiltered:  1,000 subscribers of a topic, no filter: every event goes to all of them.
//   filtered:    10,000 subscribers, each with { tag: 'team', eq: 't<i % 10>' }: an event (tagged one of ten teams in
//                turn) goes to a tenth of them, so a batch makes as many deliveries as the unfiltered fan-out's.
//   distinct:    the same, each filter also ruling out a user of its own (a key of its own: no batch is shared).
//   topics:      10,000 subscribers without a filter on a topic per team, each event published untagged to its
//                team's topic: the same deliveries to as many sockets, the way to do it without filters.
// Each measurement is BATCHES batches of BATCH events published by the server in a loop that awaits each (as users
// write it), and again with each event in a macrotask of its own (one per tick); a batch is timed from the request to
// the last subscriber's last event. Deliveries per second, p50/p99 of a batch in ms, server CPU per million
// deliveries; and the filter's own cost per subscriber, in ns, measured in this process.
//   BENCH_ROUNDS (default 3), BENCH_FILTER_SUBSCRIBERS (default 10000), BENCH_FILTER_BASE (default 1000),
//   BENCH_FILTER_SHAPES and BENCH_FILTER_MODES (subsets, for a look while working), BENCH_NODE_ARGS (the server's
//   flags: --cpu-prof), BENCH_RESULTS (default bench/RESULTS.md: appends a section)
import { spawn } from 'node:child_process'
import { appendFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { compileFilter } from '../lib/filter.js'
import type { TagFilter } from '../lib/filter.js'
import { lines, nextLine, openMany, request } from './client.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const FILTERED = Number(process.env.BENCH_FILTER_SUBSCRIBERS ?? 10_000)
const BASE = Number(process.env.BENCH_FILTER_BASE ?? 1000)
const TEAMS = 10
const BATCH = 100
const BATCHES = 3

type Shape = 'unfiltered' | 'filtered' | 'distinct' | 'topics'
type Mode = 'awaited' | 'spread'
const SHAPES = (process.env.BENCH_FILTER_SHAPES ?? 'unfiltered,topics,filtered,distinct').split(',') as Shape[]
const ALL_MODES: Record<Mode, string> = { awaited: 'awaited in a loop', spread: 'one per tick' }
const MODES = Object.fromEntries((process.env.BENCH_FILTER_MODES ?? 'awaited,spread').split(',').map(mode => [mode, ALL_MODES[mode as Mode]])) as Record<Mode, string>

function filterOf (shape: Shape, i: number): TagFilter | undefined {
  if (shape === 'unfiltered' || shape === 'topics') return undefined
  const team: TagFilter = { tag: 'team', eq: `t${i % TEAMS}` }
  return shape === 'filtered' ? team : { and: [team, { not: { tag: 'user', eq: `u${i}` } }] }
}

async function start (): Promise<{ port: number, stop: () => void }> {
  // BENCH_NODE_ARGS: extra flags for the server, `--cpu-prof` say.
  const flags = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []
  const child = spawn(process.execPath, [...flags, fileURLToPath(new URL('./hub-instance.js', import.meta.url)), 'memory', ''], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await nextLine(lines(child as never))
  return { port: Number(line.split(' ')[1]), stop: () => child.kill() }
}

const stats = async (port: number): Promise<{ subscribers: number, cpu: number }> => JSON.parse(await request(port, 'GET', '/stats'))

async function until (check: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await check())) await new Promise(resolve => setTimeout(resolve, 20))
}

async function measure (shape: Shape, mode: Mode): Promise<Record<string, number>> {
  const server = await start()
  try {
    const count = shape === 'unfiltered' ? BASE : FILTERED
    const sockets = await openMany(server.port, i => {
      const filter = filterOf(shape, i)
      const topics = [shape === 'topics' ? `feed-t${i % TEAMS}` : 'feed']
      return `/events?q=${encodeURIComponent(JSON.stringify(filter === undefined ? { topics } : { topics, filter }))}`
    }, count)
    await until(async () => (await stats(server.port)).subscribers === count && sockets.every(s => s.counter.frames >= 1))
    await new Promise(resolve => setTimeout(resolve, 100))
    // Each subscriber's share of a batch: all of it, or its team's tenth.
    const share = shape === 'unfiltered' ? BATCH : BATCH / TEAMS
    const before = await stats(server.port)
    const latencies: number[] = []
    const started = performance.now()
    for (let batch = 0; batch < BATCHES; batch++) {
      const base = sockets.map(s => s.counter.frames)
      let reached = 0
      const all = new Promise<void>(resolve => {
        sockets.forEach((s, i) => {
          let done = false
          s.counter.onFrames = () => {
            if (done || s.counter.frames - base[i] < share) return
            done = true
            if (++reached === sockets.length) resolve()
          }
        })
      })
      const sent = performance.now()
      await request(server.port, 'POST', `/broadcast?count=${BATCH}&teams=${TEAMS}&spread=${mode === 'spread' ? 1 : 0}&split=${shape === 'topics' ? 1 : 0}`)
      await all
      latencies.push(performance.now() - sent)
    }
    const seconds = (performance.now() - started) / 1000
    const after = await stats(server.port)
    for (const s of sockets) s.socket.destroy()
    const deliveries = count * share * BATCHES
    latencies.sort((a, b) => a - b)
    return {
      deliveriesPerSecond: deliveries / seconds,
      p50: latencies[Math.floor(latencies.length / 2)],
      p99: latencies[latencies.length - 1],
      cpuPerMillion: (after.cpu - before.cpu) / deliveries * 1e6
    }
  } finally {
    server.stop()
  }
}

/** ns per evaluation of a compiled filter, over tags of ten teams and a user each. */
function evaluation (filter: TagFilter): number {
  const { test } = compileFilter(filter)
  const tags = Array.from({ length: 1000 }, (_, i) => ({ team: `t${i % TEAMS}`, user: `u${i}` }))
  let passed = 0
  const runs = 20_000
  for (let warm = 0; warm < 2000; warm++) for (const t of tags) if (test(t)) passed++
  const started = process.hrtime.bigint()
  for (let r = 0; r < runs; r++) for (const t of tags) if (test(t)) passed++
  const ns = Number(process.hrtime.bigint() - started) / (runs * tags.length)
  if (passed === 0) throw new Error('nothing passed')
  return ns
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const results = new Map<string, Array<Record<string, number>>>()
for (let round = 1; round <= ROUNDS; round++) {
  for (const mode of Object.keys(MODES) as Mode[]) {
    for (const shape of SHAPES) {
      const key = `${shape}|${mode}`
      const result = await measure(shape, mode)
      results.set(key, [...(results.get(key) ?? []), result])
      console.error(`round ${round} ${key}: ${Math.round(result.deliveriesPerSecond)} deliveries/s, p99 ${result.p99.toFixed(1)} ms`)
    }
  }
}

const EVALUATIONS: Array<[string, TagFilter]> = [
  ['{ tag, eq }', { tag: 'team', eq: 't3' }],
  ['{ tag, in } of 3', { tag: 'team', in: ['t1', 't3', 't5'] }],
  ['{ and: [{ tag, eq }, { not: { tag, eq } }] }', { and: [{ tag: 'team', eq: 't3' }, { not: { tag: 'user', eq: 'u7' } }] }],
  ['{ or } of 3 { and } of 2', { or: [1, 2, 3].map(n => ({ and: [{ tag: 'team', eq: `t${n}` }, { tag: 'user', in: [`u${n}`, `u${n + 10}`] }] })) }]
]
const costs = EVALUATIONS.map(([name, filter]) => [name, median([evaluation(filter), evaluation(filter), evaluation(filter)])] as const)

const row = (shape: Shape, mode: Mode): string => {
  const all = results.get(`${shape}|${mode}`) as Array<Record<string, number>>
  const m = (field: string): number => median(all.map(r => r[field]))
  const base = median((results.get(`unfiltered|${mode}`) as Array<Record<string, number>>).map(r => r.deliveriesPerSecond))
  const subscribers = shape === 'unfiltered' ? BASE : FILTERED
  const topics = median((results.get(`topics|${mode}`) as Array<Record<string, number>>).map(r => r.deliveriesPerSecond))
  return `| ${shape} | ${subscribers.toLocaleString('en')} | ${MODES[mode]} | ${Math.round(m('deliveriesPerSecond')).toLocaleString('en')} | ${m('p50').toFixed(1)} | ${m('p99').toFixed(1)} | ${m('cpuPerMillion').toFixed(2)} | ${(m('deliveriesPerSecond') / base).toFixed(2)}x | ${(m('deliveriesPerSecond') / topics).toFixed(2)}x |`
}
const text = `
## Filtered fan-out (\`npm run bench:filter\`, issue 29)

${new Date().toISOString().slice(0, 10)}, ${ROUNDS} rounds interleaved, medians. ${BATCHES} batches of ${BATCH} events of about 200 bytes per
measurement, tagged with one of ${TEAMS} teams in turn; filtered subscribers each take one team (a tenth of the events), so a batch
makes ${(BASE * BATCH).toLocaleString('en')} deliveries in every shape. \`distinct\`: each filter also rules out a user of its own, so that no
two subscribers share a filter (no joined batch is shared). \`topics\`: no filter, a topic per team instead (the same
deliveries to as many sockets). The last two columns: deliveries/s against the unfiltered fan-out to ${BASE.toLocaleString('en')}
subscribers in the same mode (the issue's target: at least 0.8x), and against \`topics\` (what the filter itself costs).

| shape | subscribers | publishes | deliveries/s | batch p50 ms | batch p99 ms | CPU s per 1M deliveries | vs unfiltered 1,000 | vs topics |
|---|---|---|---|---|---|---|---|---|
${(Object.keys(MODES) as Mode[]).flatMap(mode => SHAPES.map(shape => row(shape, mode))).join('\n')}

A compiled filter's cost per subscriber per event (one call of its test on an event's tags), medians of three runs of 20M:

| filter | ns per evaluation |
|---|---|
${costs.map(([name, ns]) => `| \`${name}\` | ${ns.toFixed(1)} |`).join('\n')}
`
process.stdout.write(text)
await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), text)
