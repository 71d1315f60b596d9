import Fastify, { type FastifyInstance } from 'fastify'
import fastifyEventStream, { type EncodedMessage } from '../../index.js'
import { cases } from './cases.js'

/**
 * The server every client reads: each case at /case/<name>, a reconnection at /reconnect, and a retry hint at
 * /retry. Each stream ends with a `done` event so that the client knows it saw everything.
 */
export async function conformanceServer (): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false })

  // A page on the same origin, for the browser.
  app.get('/', (_request, reply) => { reply.type('text/html').send('<!doctype html><title>conformance</title>') })

  app.get<{ Params: { name: string } }>('/case/:name', async (request, reply) => {
    const stream = reply.sse()
    cases[request.params.name].send(stream)
    stream.message('', { event: 'done' })
    await stream.close()
  })

  // First connection: two events and a short retry, then the server closes. The client reconnects by itself with
  // Last-Event-ID, which the second stream reads back.
  app.get('/reconnect', async (_request, reply) => {
    const stream = reply.sse()
    if (stream.lastEventId === undefined) {
      stream.message('one', { id: 'r1', retry: 50 })
      stream.message('two', { id: 'r2' })
    } else {
      stream.message(`resumed after ${stream.lastEventId}`, { id: 'r3' })
      stream.message('', { event: 'done' })
    }
    await stream.close()
  })

  // The first connection sets retry and closes; the second reports how long the client waited.
  const closedAt = new Map<string, number>()
  app.get<{ Querystring: { token: string, ms: string } }>('/retry', async (request, reply) => {
    const stream = reply.sse()
    const { token, ms } = request.query
    const closed = closedAt.get(token)
    if (closed === undefined) {
      stream.message('first', { retry: Number(ms) })
      await stream.close()
      closedAt.set(token, Date.now())
      return
    }
    closedAt.delete(token)
    stream.message(String(Date.now() - closed), { event: 'waited' })
    stream.message('', { event: 'done' })
    await stream.close()
  })
  // The hub's position frame: a new subscriber gets an id-only frame, which dispatches no event but sets the id the
  // client sends back as Last-Event-ID; after the server closes, it gets what was published while it was away.
  const shortRetry = Buffer.from('retry: 50\n\n') as EncodedMessage
  const resumed = new Set<string>()
  app.get<{ Querystring: { topic: string } }>('/resume', async (request, reply) => {
    const stream = reply.sse()
    const { topic } = request.query
    if (!resumed.has(topic)) {
      resumed.add(topic)
      stream.write(shortRetry)
      await app.eventHub.subscribe(stream, topic)
      await stream.close()
      await app.eventHub.publish(topic, 'missed 1', { id: `${topic}-1` })
      await app.eventHub.publish(topic, 'missed 2', { id: `${topic}-2` })
      return
    }
    await app.eventHub.subscribe(stream, topic)
    await app.eventHub.publish(topic, '', { event: 'done', id: `${topic}-done` })
  })
  return app
}
