// `node dist/bench/serialize.js` (part of `npm run bench` and bench:quick): the cost of serializing one event of
// about 200 bytes (bench/order.ts) with JSON.stringify() and with its schema compiled by Fastify's default serializer
// compiler (fast-json-stringify, as `schema.events` and `hub.events` compile it), in nanoseconds per event, rounds
// interleaved, medians. Also with undeclared fields on the payload (the compiled serializer leaves them out).
//   BENCH_SERIALIZE_EVENTS (default 1000000 per round), BENCH_ROUNDS (default 5), BENCH_RESULTS (default bench/RESULTS.md: appends
//   its table)
import SerializerSelector from '@fastify/fast-json-stringify-compiler'
import { appendFile } from 'node:fs/promises'
import { ORDER, ORDER_SCHEMA } from './order.js'

const EVENTS = Number(process.env.BENCH_SERIALIZE_EVENTS ?? 1_000_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const compiled = SerializerSelector()()({ schema: ORDER_SCHEMA, method: 'GET', url: '/bench', httpStatus: '200' })
const WITH_EXTRA = { ...ORDER, passwordHash: '$2b$10$abcdefghijklmnopqrstuv', internalNote: 'refund requested twice' }

const serializers: Record<string, (payload: unknown) => string> = { 'JSON.stringify': JSON.stringify, compiled }
const payloads: Record<string, unknown> = { order: ORDER, 'order + 2 undeclared fields': WITH_EXTRA }

/** Nanoseconds per serialization of `payload`; the lengths are summed so that the work is not optimised away. */
function measure (serialize: (payload: unknown) => string, payload: unknown): number {
  let bytes = 0
  const started = process.hrtime.bigint()
  for (let i = 0; i < EVENTS; i++) bytes += serialize(payload).length
  const ns = Number(process.hrtime.bigint() - started) / EVENTS
  if (bytes === 0) throw new Error('nothing serialized')
  return ns
}

const samples = new Map<string, number[]>()
// Round 0 warms both up and is not counted.
for (let round = 0; round <= ROUNDS; round++) {
  for (const [payloadName, payload] of Object.entries(payloads)) {
    for (const [name, serialize] of Object.entries(serializers)) {
      const key = `${payloadName}\n${name}`
      const ns = measure(serialize, payload)
      if (round > 0) samples.set(key, [...(samples.get(key) ?? []), ns])
    }
  }
}
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const lines = ['| payload | bytes (JSON.stringify / compiled) | JSON.stringify ns | compiled ns | compiled vs JSON.stringify |', '|---|---:|---:|---:|---:|']
for (const [payloadName, payload] of Object.entries(payloads)) {
  const plain = median(samples.get(`${payloadName}\nJSON.stringify`) as number[])
  const fast = median(samples.get(`${payloadName}\ncompiled`) as number[])
  lines.push(`| ${payloadName} | ${JSON.stringify(payload).length} / ${compiled(payload).length} | ${plain.toFixed(0)} | ${fast.toFixed(0)} | ${(plain / fast).toFixed(2)}× |`)
}
const table = lines.join('\n')
console.log(table)
await appendFile(process.env.BENCH_RESULTS ?? new URL('../../bench/RESULTS.md', import.meta.url), `
## Serializing one event: JSON.stringify() or the event's compiled schema

\`node dist/bench/serialize.js\` (BENCH_ROUNDS=${ROUNDS}, ${EVENTS} events a round): one typed event of about 200 bytes
(\`bench/order.ts\`) serialized in a loop in one process, nanoseconds per event, medians of interleaved rounds. The
compiled serializer is Fastify's default compiler (fast-json-stringify), as \`schema.events\` and \`hub.events\`
compile it; it leaves undeclared fields out.

${table}
`)
