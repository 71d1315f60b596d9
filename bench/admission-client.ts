// A client worker of the admission scenario: `node dist/bench/admission-client.js <port> <count> <source network> [probe]`.
// Keeps `count` clients each trying to hold one stream, as this plugin's client does: a 503 is waited out for its
// Retry-After, then tried again; a stream that ends is opened again. Raw sockets, so that the clients cost little.
// stdin "report" answers one JSON line: clients connected, refusals with a histogram of their answer times, delivery latencies
// (publish to receipt, ms); "reset" clears the samples. With `probe`, it is one client that opens a connection every
// BENCH_ADMISSION_PROBE_MS (20), times the answer's headers and closes it at once (whether refused or not).
import net from 'node:net'
import readline from 'node:readline'

const [port, count, network] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]]
// Connections come from 64 loopback addresses of the worker's network (`127.1.3` gives 127.1.3.1-64), in turn: each
// refusal leaves its client port in TIME_WAIT for a minute, and 6,000 of them on one address (100 refusals a second)
// made the kernel's search for a free port in connect() slow enough to starve the machine's two cores after 30 s.
let addresses = 0
const localAddress = (): string => `${network}.${1 + (addresses++ % 64)}`
const JITTER = Number(process.env.BENCH_ADMISSION_JITTER_MS ?? 0)
const REQUEST = 'GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'
let connected = 0
let failures = 0
let refusalTimes: Histogram = {}
let latencies: Histogram = {}
let refusals = 0
let deliveries = 0
/** Samples by whole milliseconds (sparse), so that the orchestrator merges every worker's into one p99. */
type Histogram = Record<number, number>
function record (histogram: Histogram, ms: number): void {
  const bucket = Math.max(0, Math.floor(ms))
  histogram[bucket] = (histogram[bucket] ?? 0) + 1
}
const now = (): number => performance.timeOrigin + performance.now()

function attempt (): void {
  // Timed from the connect() call: a handshake the kernel dropped (a full accept queue) counts in the answer time.
  const sent = performance.now()
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: localAddress() })
  let state: 'head' | 'open' | 'refused' = 'head'
  let text = ''
  socket.once('connect', () => { socket.write(REQUEST) })
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    if (state === 'head') {
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      if (text.startsWith('HTTP/1.1 503')) {
        state = 'refused'
        record(refusalTimes, performance.now() - sent)
        refusals++
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
      if (line.startsWith('data: ')) {
        record(latencies, received - Number(line.slice(6)))
        deliveries++
      }
    }
    text = text.slice(last + 1)
  })
  socket.on('error', () => { failures++ })
  socket.on('close', () => {
    if (state === 'open') connected--
    if (state !== 'refused') setTimeout(attempt, 1000)
  })
}

/** Probe mode: one connection at a time, timed from connect() to the answer's headers, closed at once. */
function probe (): void {
  const sent = performance.now()
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: localAddress() })
  let text = ''
  socket.once('connect', () => { socket.write(REQUEST) })
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    if (!text.includes('\r\n\r\n')) return
    if (text.startsWith('HTTP/1.1 503')) {
      record(refusalTimes, performance.now() - sent)
      refusals++
    }
    socket.destroy()
  })
  socket.on('error', () => { failures++ })
  socket.on('close', () => { setTimeout(probe, PROBE_MS) })
}

const PROBE_MS = Number(process.env.BENCH_ADMISSION_PROBE_MS ?? 20)
if (process.argv[5] === 'probe') {
  probe()
} else {
  let started = 0
  const timer = setInterval(() => {
    for (let i = 0; i < 100 && started < count; i++, started++) attempt()
    if (started === count) clearInterval(timer)
  }, 10)
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === 'reset') {
    refusalTimes = {}
    latencies = {}
    refusals = 0
    deliveries = 0
  } else if (line === 'report') {
    process.stdout.write(JSON.stringify({ connected, failures, refusals, refusalTimes, deliveries, latencies }) + '\n')
  }
}
