// A client process of the client benchmark (bench/client-read.ts): `node dist/bench/client-worker.js <library>
// <mode> <url> <count>`, library one of ours | eventsource | eventsource-client | floor (fetch + eventsource-parser:
// parsing only, no reconnection, the least a client can do).
// - burst: one client reads <count> tick events from <url> (JSON-parsing each, as an app would) and prints
//   { ms, cpuUs } from the request to the last event.
// - many: prints { rss, heap } after a GC, opens <count> clients and tracks each one's ticks; prints "ready" once each
//   got one. On "measure" prints { rss, heap } after a GC; on "report" { open, received, gaps, repeats, attempts,
//   opened, last } (attempts: fetch calls, failed or not; opened: when each client last opened, ms since the epoch) (last: the lowest last tick).
import { createParser } from 'eventsource-parser'
import { EventSource } from 'eventsource'
import { createEventSource } from 'eventsource-client'
import readline from 'node:readline'
import { connect } from '../lib/client/index.js'

const [library, mode, url, count] = [process.argv[2], process.argv[3], process.argv[4], Number(process.argv[5])]

interface Handlers { tick: (n: number) => void, open: () => void, failure: () => void }
type Opener = (url: string, on: Handlers) => { close: () => void }

const tick = (data: string): number => (JSON.parse(data) as { n: number }).n
/** Every library takes a fetch: this one counts the connection attempts, failed or not. */
let attempts = 0
/** What the attempts got: a status, or the network error's code. */
const outcomes: Record<string, number> = {}
const counted: typeof fetch = async (input, init) => {
  attempts++
  try {
    const response = await fetch(input, init)
    outcomes[response.status] = (outcomes[response.status] ?? 0) + 1
    return response
  } catch (err) {
    const code = String((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name)
    outcomes[code] = (outcomes[code] ?? 0) + 1
    throw err
  }
}

const LIBRARIES: Record<string, Opener> = {
  ours: (url, on) => {
    const client = connect<{ tick: { n: number } }>(url, { fetch: counted })
    client.on('tick', data => on.tick(data.n))
    client.onState((state, error) => {
      if (state === 'open') on.open()
      else if (error !== undefined) on.failure()
    })
    return client
  },
  eventsource: (url, on) => {
    const source = new EventSource(url, { fetch: counted })
    source.addEventListener('tick', event => on.tick(tick(event.data)))
    source.onopen = on.open
    source.onerror = on.failure
    return source
  },
  'eventsource-client': (url, on) => createEventSource({
    url,
    fetch: counted,
    onMessage: message => { if (message.event === 'tick') on.tick(tick(message.data)) },
    onConnect: on.open,
    onDisconnect: on.failure
  }),
  floor: (url, on) => {
    const controller = new AbortController()
    const parser = createParser({ onEvent: event => { if (event.event === 'tick') on.tick(tick(event.data)) } })
    counted(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } }).then(async response => {
      on.open()
      const decoder = new TextDecoder()
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }))
    }).catch(() => {})
    return { close: () => controller.abort() }
  }
}
const open = LIBRARIES[library]

async function burst (): Promise<void> {
  const started = Date.now()
  const cpu = process.cpuUsage()
  await new Promise<void>(resolve => {
    let seen = 0
    const client = open(url, {
      tick: () => {
        if (++seen !== count) return
        client.close()
        resolve()
      },
      open: () => {},
      failure: () => {}
    })
  })
  const used = process.cpuUsage(cpu)
  process.stdout.write(JSON.stringify({ ms: Date.now() - started, cpuUs: used.user + used.system }) + '\n')
  process.exit(0)
}

async function many (): Promise<void> {
  globalThis.gc?.()
  const base = process.memoryUsage()
  process.stdout.write(JSON.stringify({ rss: base.rss, heap: base.heapUsed }) + '\n')
  const state = Array.from({ length: count }, () => ({ last: 0, received: 0, gaps: 0, repeats: 0, open: false, openedAt: 0 }))
  let ready = 0
  for (const [i, client] of state.entries()) {
    open(url, {
      tick: n => {
        if (client.received++ === 0 && ++ready === count) process.stdout.write('ready\n')
        if (client.last !== 0 && n <= client.last) client.repeats++
        else if (client.last !== 0 && n > client.last + 1) client.gaps += n - client.last - 1
        client.last = Math.max(client.last, n)
      },
      open: () => { Object.assign(client, { open: true, openedAt: Date.now() }) },
      failure: () => { Object.assign(client, { open: false, }) }
    })
    // Opened a few at a time, as pages load.
    if (i % 100 === 99) await new Promise(resolve => setTimeout(resolve, 10))
  }
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line === 'measure') {
      globalThis.gc?.()
      const { rss, heapUsed } = process.memoryUsage()
      process.stdout.write(JSON.stringify({ rss, heap: heapUsed }) + '\n')
    } else if (line === 'report') {
      const total = (key: 'received' | 'gaps' | 'repeats'): number => state.reduce((sum, client) => sum + client[key], 0)
      process.stdout.write(JSON.stringify({
        open: state.filter(client => client.open).length,
        received: total('received'),
        gaps: total('gaps'),
        repeats: total('repeats'),
        attempts,
        outcomes,
        opened: state.map(client => client.openedAt),
        last: Math.min(...state.map(client => client.last))
      }) + '\n')
    }
  }
}

if (mode === 'burst') await burst()
else await many()
