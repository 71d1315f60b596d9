// A live newsroom over Server-Sent Events: two chat rooms and a news feed, broadcast through the hub. Run `npm start`,
// open http://localhost:3000 in two windows and chat; press "Drop connection" or reload the page: it resumes from its
// last event id and nothing is lost.
import Fastify from 'fastify'
import { readFile } from 'node:fs/promises'
import fastifyEventStream, { type EventHub, type EventStream } from '../index.js'

export type LiveEvents = {
  chat: { room: string, name: string, text: string, time: string }
  news: { n: number, headline: string, time: string }
}

const ROOMS = ['general', 'random']
const TOPICS = [...ROOMS.map(room => `room:${room}`), 'news']
const SUBJECTS = ['Council', 'Harbour', 'Observatory', 'Library', 'Railway', 'Market', 'Orchestra', 'Bakery']
const VERBS = ['opens', 'delays', 'celebrates', 'announces', 'rebuilds', 'tests', 'closes', 'welcomes']
const OBJECTS = ['a night shift', 'the east wing', 'free Wi-Fi', 'a new timetable', 'its 100th year', 'solar panels']

function headline (n: number): string {
  return `${SUBJECTS[n % SUBJECTS.length]} ${VERBS[(n * 3) % VERBS.length]} ${OBJECTS[(n * 5) % OBJECTS.length]}`
}

async function buildLive (tickMs: number) {
  const app = Fastify({ logger: true })
  await app.register(fastifyEventStream, { retry: 1000, hub: { historySize: 500 } })
  const hub = app.eventHub as EventHub<LiveEvents>
  const page = await readFile(new URL('../../examples/live.html', import.meta.url), 'utf8')
  const streams = new Set<EventStream>()

  app.get('/', (_request, reply) => { reply.type('text/html; charset=utf-8').send(page) })

  app.get<{ Querystring: { lastEventId?: string } }>('/events', {
    schema: { querystring: { type: 'object', properties: { lastEventId: { type: 'string', maxLength: 64 } } } }
  }, (request, reply) => {
    const stream = reply.sse()
    streams.add(stream)
    stream.signal.addEventListener('abort', () => streams.delete(stream))
    // EventSource sends Last-Event-ID on its own reconnects; after a reload, the page passes the id it kept.
    hub.subscribe(stream, TOPICS, { lastEventId: stream.lastEventId ?? request.query.lastEventId })
  })

  app.post<{ Params: { room: string }, Body: { name: string, text: string } }>('/rooms/:room/messages', {
    schema: {
      params: { type: 'object', properties: { room: { enum: ROOMS } } },
      body: {
        type: 'object',
        required: ['name', 'text'],
        properties: { name: { type: 'string', minLength: 1, maxLength: 32 }, text: { type: 'string', minLength: 1, maxLength: 500 } }
      }
    }
  }, async (request, reply) => {
    const { room } = request.params
    const id = await hub.send(`room:${room}`, 'chat', { room, ...request.body, time: new Date().toISOString() })
    reply.code(201)
    return { id }
  })

  // Ends every open stream, as a network failure or a deploy would.
  app.post('/drop', async () => {
    const dropped = streams.size
    await Promise.all(Array.from(streams, stream => stream.close()))
    return { dropped }
  })

  app.get('/stats', async () => hub.stats())

  let n = 0
  const timer = setInterval(() => {
    n++
    hub.send('news', 'news', { n, headline: headline(n), time: new Date().toISOString() })
      // The in-memory store cannot fail and the timer stops before the hub closes: kept for a store that can.
      /* c8 ignore next */
      .catch((err: unknown) => app.log.error({ err }, 'publishing the news failed'))
  }, tickMs)
  // preClose: before the hub's store closes, so that no tick is published to a closed hub.
  app.addHook('preClose', async () => clearInterval(timer))
  return app
}

// The settings come from the environment, for the demo's own test; `npm start` takes the defaults.
/* c8 ignore start */
const app = await buildLive(Number(process.env.TICK_MS ?? 2000))
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? 'localhost'
/* c8 ignore stop */
await app.listen({ port, host })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
