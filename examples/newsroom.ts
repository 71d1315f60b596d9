// The live newsroom: two chat rooms and a news feed over Server-Sent Events, broadcast through the hub. One instance
// of it; `live.ts` runs one on its own, `instances.ts` two sharing a Redis store.
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { readFile } from 'node:fs/promises'
import fastifyEventStream, { type EventHub, type EventStore, type EventStream } from '../index.js'
import { assistantRoutes } from './assistant.js'

export type LiveEvents = {
  chat: { room: string, name: string, text: string, time: string }
  news: { n: number, headline: string, time: string }
}

const ROOMS = ['general', 'random']
/** The client's modules (lib/client). */
const CLIENT_FILES = ['index.js', 'client.js', 'errors.js', 'tabs.js']
const TOPICS = [...ROOMS.map(room => `room:${room}`), 'news']
const SUBJECTS = ['Council', 'Harbour', 'Observatory', 'Library', 'Railway', 'Market', 'Orchestra', 'Bakery']
const VERBS = ['opens', 'delays', 'celebrates', 'announces', 'rebuilds', 'tests', 'closes', 'welcomes']
const OBJECTS = ['a night shift', 'the east wing', 'free Wi-Fi', 'a new timetable', 'its 100th year', 'solar panels']

function headline (n: number): string {
  return `${SUBJECTS[n % SUBJECTS.length]} ${VERBS[(n * 3) % VERBS.length]} ${OBJECTS[(n * 5) % OBJECTS.length]}`
}

/** Serves the package's client as the build has it, for a page: /client/index.js, which imports ../parse.js. */
export function serveClient (app: FastifyInstance): void {
  const lib = new URL(import.meta.url.includes('/dist/examples/') ? '../lib/' : '../dist/lib/', import.meta.url)
  const script = (file: string) => async (_request: unknown, reply: FastifyReply) => {
    reply.type('text/javascript; charset=utf-8').send(await readFile(new URL(file, lib)))
  }
  for (const file of CLIENT_FILES) app.get(`/client/${file}`, script(`client/${file}`))
  app.get('/parse.js', script('parse.js'))
}

export interface Instance {
  name: string
  url: string
}

export interface NewsroomOptions {
  /** A news item every tickMs; 0 for an instance that only serves (another one publishes the news). */
  tickMs: number
  /** The hub's store: in memory unless given. */
  store?: EventStore
  /** This instance's name, and every instance the page may use (none: only its own origin). */
  name?: string
  instances?: () => Instance[]
  /** Milliseconds between the assistant's words (default a twentieth of tickMs, at least 40). */
  wordMs?: number
}

export async function buildNewsroom ({ tickMs, store, name = 'single', instances = () => [], wordMs }: NewsroomOptions) {
  const app = Fastify({ logger: true })
  // The page passes its last id as ?lastEventId= after a reload (EventSource cannot set the header).
  await app.register(fastifyEventStream, { retry: 1000, lastEventIdQuery: 'lastEventId', hub: store === undefined ? { historySize: 500 } : { store } })
  const hub = app.eventHub as EventHub<LiveEvents>
  // Beside this file in the sources; two folders up from its build in dist/examples.
  const page = await readFile(new URL(import.meta.url.includes('/dist/examples/') ? '../../examples/live.html' : './live.html', import.meta.url), 'utf8')
  const streams = new Set<EventStream>()

  app.get('/', (_request, reply) => { reply.type('text/html; charset=utf-8').send(page) })
  serveClient(app)
  // Which instance this is, and where the others are: with several, the page moves to another after a drop.
  app.get('/instance', async () => ({ name, instances: instances() }))
  // The page of one instance reads the streams of the others.
  app.addHook('onRequest', async (_request, reply) => { reply.header('access-control-allow-origin', '*') })

  app.get<{ Querystring: { lastEventId?: string } }>('/events', {
    schema: { querystring: { type: 'object', properties: { lastEventId: { type: 'string', maxLength: 64 } } } }
  }, (_request, reply) => {
    const stream = reply.sse()
    streams.add(stream)
    stream.signal.addEventListener('abort', () => streams.delete(stream))
    // From Last-Event-ID on EventSource's own reconnects, from ?lastEventId= after a reload.
    hub.subscribe(stream, TOPICS)
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

  app.get('/stats', async () => ({ ...hub.stats(), runs: app.eventRuns.stats() }))
  // The assistant's words come twenty times as often as the news.
  assistantRoutes(app, wordMs ?? Math.max(40, Math.floor((tickMs > 0 ? tickMs : 2000) / 20)))

  if (tickMs > 0) publishNews(app, hub, tickMs)
  return app
}

function publishNews (app: FastifyInstance, hub: EventHub<LiveEvents>, tickMs: number): void {
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
}
