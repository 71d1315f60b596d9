// A client worker of the admission scenario: `node dist/bench/admission-client.js <port> <count> <source address>`.
// Keeps `count` clients each trying to hold one stream, as this plugin's client does: a 503 is waited out for its
// Retry-After, then tried again; a stream that ends is opened again. Raw sockets, so that the clients cost little.
// stdin "report" answers one JSON line: clients connected, refusals with their answer times, delivery latencies
// (publish to receipt, ms); "reset" clears the samples.
import net from 'node:net'
import readline from 'node:readline'

const [port, count, localAddress] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]]
const JITTER = Number(process.env.BENCH_ADMISSION_JITTER_MS ?? 0)
const REQUEST = 'GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'
let connected = 0
let failures = 0
let refusalTimes: number[] = []
let latencies: number[] = []
const now = (): number => performance.timeOrigin + performance.now()

function attempt (): void {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress })
  let sent = 0
  let state: 'head' | 'open' | 'refused' = 'head'
  let text = ''
  socket.once('connect', () => { sent = performance.now(); socket.write(REQUEST) })
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    if (state === 'head') {
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      if (text.startsWith('HTTP/1.1 503')) {
        state = 'refused'
        refusalTimes.push(performance.now() - sent)
        const seconds = Number(/retry-after: (\d+)/i.exec(text)?.[1] ?? 1)
        socket.destroy()
        setTimeout(attempt, seconds * 1000 + JITTER * Math.random())
        return
      }
      state = 'open'
      connected++
      text = text.slice(end + 4)
    }
    const last = text.lastIndexOf('\n')
    if (last === -1) return
    const received = now()
    for (const line of text.slice(0, last).split('\n')) {
      if (line.startsWith('data: ')) latencies.push(received - Number(line.slice(6)))
    }
    text = text.slice(last + 1)
  })
  socket.on('error', () => { failures++ })
  socket.on('close', () => {
    if (state === 'open') connected--
    if (state !== 'refused') setTimeout(attempt, 1000)
  })
}

let started = 0
const timer = setInterval(() => {
  for (let i = 0; i < 100 && started < count; i++, started++) attempt()
  if (started === count) clearInterval(timer)
}, 10)

function p99 (samples: number[]): number {
  if (samples.length === 0) return 0
  const sorted = Float64Array.from(samples).sort()
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === 'reset') {
    refusalTimes = []
    latencies = []
  } else if (line === 'report') {
    process.stdout.write(JSON.stringify({ connected, failures, refusals: refusalTimes.length, refusalP99: p99(refusalTimes), deliveries: latencies.length, deliveryP99: p99(latencies) }) + '\n')
  }
}
