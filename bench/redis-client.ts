// A client worker of the fleet benchmarks: `node dist/bench/redis-client.js <port> <first user> <count> <shared
// topics> <source address>`. Opens one stream per user (GET /events?user=N&shared=N%shared) from its own loopback
// address, prints "ready" once all are open. Checks every event: ids strictly increasing per stream (a repeat is a
// duplicate, a step back is out of order), and latency from the data's monotonic timestamp. On stdin:
// "report" prints the counts per topic, the violations and a latency histogram (1 ms buckets) as JSON, then resets
// the histogram; "drop" ends every stream; "reconnect <window ms> <events>" reopens each at a random moment of the
// window with its Last-Event-ID and prints "resumed <ms>" once every stream has received that many events again.
import http from 'node:http'
import readline from 'node:readline'
import { EventStreamParser } from '../lib/parse.js'

const [port, first, count, shared] = process.argv.slice(2, 6).map(Number)
const localAddress = process.argv[6]
const BUCKETS = 10_000

interface Stream { user: number, lastId: string, last: number, since: number, request?: http.ClientRequest }
const counts: Record<string, number> = {}
let histogram = new Array<number>(BUCKETS).fill(0)
let duplicates = 0
let outOfOrder = 0
let expect = 0
let waiting = 0
let reconnectStarted = 0

function open (stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = stream.lastId === '' ? {} : { 'last-event-id': stream.lastId }
    const request = http.get({ host: '127.0.0.1', port, localAddress, agent: false, headers, path: `/events?user=${stream.user}&shared=${stream.user % shared}` }, response => {
      const parser = new EventStreamParser(event => {
        const id = Number(event.lastEventId)
        if (id === stream.last) duplicates++
        else if (id < stream.last) outOfOrder++
        stream.last = id
        stream.lastId = event.lastEventId
        const bar = event.data.indexOf('|')
        const topic = event.data.slice(0, bar)
        counts[topic] = (counts[topic] ?? 0) + 1
        const ms = Number(process.hrtime.bigint() / 1000n - BigInt(event.data.slice(bar + 1))) / 1000
        histogram[Math.min(BUCKETS - 1, Math.floor(ms))]++
        if (expect > 0 && ++stream.since === expect && --waiting === 0) process.stdout.write(`resumed ${Date.now() - reconnectStarted}\n`)
      })
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        parser.feed(chunk)
        // The id-only frame a new subscriber gets first sets the id without an event.
        if (stream.lastId === '') stream.lastId = parser.lastEventId
      })
      response.on('error', () => {})
      resolve()
    })
    request.on('error', reject)
    stream.request = request
  })
}

const streams: Stream[] = Array.from({ length: count }, (_, i) => ({ user: first + i, lastId: '', last: 0, since: 0 }))
let next = 0
await Promise.all(Array.from({ length: 100 }, async () => { while (next < count) await open(streams[next++]) }))
// Every stream has its position frame before the worker says it is ready.
while (streams.some(stream => stream.lastId === '')) await new Promise(resolve => setTimeout(resolve, 20))
process.stdout.write('ready\n')

for await (const line of readline.createInterface({ input: process.stdin })) {
  const [command, ...args] = line.split(' ')
  if (command === 'report') {
    process.stdout.write(`report ${JSON.stringify({ counts, duplicates, outOfOrder, histogram })}\n`)
    histogram = new Array<number>(BUCKETS).fill(0)
  } else if (command === 'drop') {
    for (const stream of streams) stream.request?.destroy()
  } else if (command === 'reconnect') {
    const [windowMs, events] = args.map(Number)
    expect = events
    waiting = count
    reconnectStarted = Date.now()
    for (const stream of streams) {
      stream.since = 0
      setTimeout(() => { open(stream).catch(() => {}) }, Math.random() * windowMs)
    }
  }
}
