// What the client's tests share: a server that records each request, and waits on the client's states and events.
import type { FastifyInstance, FastifyReply } from 'fastify'
import { EventEmitter } from 'node:events'
import type { Test } from 'tap'
import type { ClientState, EventClient, EventClientError, EventMap } from '../../lib/client/index.js'
import { build, listen } from '../helpers.js'

export type Events = { chat: { text: string }, note: string }

export interface Seen {
  at: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
}

/** An app whose /events route answers each request with `answer(n, reply)` (n from 0) and records what came. */
export async function server (t: Test, answer: (n: number, reply: FastifyReply) => unknown, options = {}): Promise<{ app: FastifyInstance, url: string, seen: Seen[] }> {
  // Node's fetch opens a spare socket when a request is aborted: closed with the app, not after its keep-alive.
  const app = await build(t, options, { forceCloseConnections: true })
  const seen: Seen[] = []
  const route = (request: { headers: Seen['headers'], body: unknown }, reply: FastifyReply): unknown => {
    seen.push({ at: Date.now(), headers: request.headers, body: request.body })
    return answer(seen.length - 1, reply)
  }
  app.get('/events', (request, reply) => route(request, reply))
  app.post('/events', (request, reply) => route(request, reply))
  return { app, url: await listen(app) + '/events', seen }
}

/** Resolves with the client's next state change that passes `check`. */
export async function state (client: EventClient<any>, check: (state: ClientState, error: EventClientError | undefined) => boolean): Promise<EventClientError | undefined> {
  return await new Promise(resolve => {
    const off = client.onState((state, error) => {
      if (!check(state, error)) return
      off()
      resolve(error)
    })
  })
}

/** The client's events of one type as an emitter, for once(). */
export function eventsOf<Events extends EventMap> (client: EventClient<Events>, type: 'message' | 'resync'): EventEmitter {
  const emitter = new EventEmitter()
  client.on(type, data => emitter.emit('event', data))
  return emitter
}
