// A live clock over Server-Sent Events. Run `npm start`, open http://localhost:3000, press "Drop connection":
// the browser reconnects by itself, sends Last-Event-ID, and the server replays the ticks it missed.
import Fastify from 'fastify'
import { readFile } from 'node:fs/promises'
import fastifyEventStream, { type EventStream } from '../index.js'

interface Tick { n: number, time: string }
type ClockEvents = { tick: Tick & { replayed: boolean } }

const HISTORY = 120
const history: Tick[] = []
const clients = new Set<EventStream<ClockEvents>>()
let next = 1

async function buildClock (tickMs: number) {
  const app = Fastify({ logger: true })
  await app.register(fastifyEventStream, { retry: 1000, heartbeat: 15_000 })
  const page = await readFile(new URL('../../examples/clock.html', import.meta.url), 'utf8')

  app.get('/', (_request, reply) => { reply.type('text/html; charset=utf-8').send(page) })

  app.get('/clock', (_request, reply) => {
    const stream = reply.sse<ClockEvents>()
    // Resume: every tick after the client's last one that is still in the history. The loop does not await, so
    // no tick can be published between the replay and joining the live clients; the queue keeps the order.
    const last = Number(stream.lastEventId)
    if (Number.isInteger(last)) {
      for (const tick of history) if (tick.n > last) stream.send('tick', { ...tick, replayed: true }, { id: tick.n })
    }
    clients.add(stream)
    stream.signal.addEventListener('abort', () => clients.delete(stream))
  })

  // Ends every open stream, as a network failure or a deploy would.
  app.post('/drop', async () => {
    const dropped = clients.size
    await Promise.all(Array.from(clients, stream => stream.close()))
    return { dropped }
  })

  const timer = setInterval(() => {
    const tick = { n: next++, time: new Date().toISOString() }
    history.push(tick)
    if (history.length > HISTORY) history.shift()
    for (const stream of clients) stream.send('tick', { ...tick, replayed: false }, { id: tick.n })
  }, tickMs)
  app.addHook('onClose', async () => clearInterval(timer))
  return app
}

// The settings come from the environment, for the demo's own test; `npm start` takes the defaults.
/* c8 ignore start */
const app = await buildClock(Number(process.env.TICK_MS ?? 1000))
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? 'localhost'
/* c8 ignore stop */
await app.listen({ port, host })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
