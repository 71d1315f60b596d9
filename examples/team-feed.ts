// A team feed: one topic for everyone, notes private to a team reach only that team (a filter on the events' tags),
// and the list of who is online (presence). The README's "Who gets what" and "Who is here" sections show this code;
// test/team-feed.test.ts runs it with real clients. Who the user is comes from the query here, to keep the example
// short: take it from your authentication instead (a filter is only a boundary if the client cannot choose it).
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyEventStream, { type EventStore } from '../index.js'

interface User { id: string, name: string, team: string }

/** Your authentication goes here. */
function userOf (request: FastifyRequest): User {
  const { user = 'guest', team = 'none' } = request.query as { user?: string, team?: string }
  return { id: user, name: user[0].toUpperCase() + user.slice(1), team }
}

export async function buildTeamFeed (store?: EventStore): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyEventStream, { hub: { store, presence: { announce: true } } })

  app.get('/feed', (request, reply) => {
    const { id, name, team } = userOf(request)
    app.eventHub.subscribe(reply.sse(), 'feed', {
      // Public notes, and the private notes of the user's own team.
      filter: { or: [{ not: { tag: 'visibility', eq: 'team' } }, { tag: 'team', eq: team }] },
      presence: { id, info: { name, team } }
    }).catch(err => request.log.error({ err }, 'subscribe failed'))
  })

  app.post<{ Body: { text: string, private?: boolean } }>('/notes', async (request) => {
    const { name, team } = userOf(request)
    const tags = request.body.private === true ? { visibility: 'team', team } : { team }
    return { id: await app.eventHub.send('feed', 'note', { from: name, text: request.body.text }, { tags }) }
  })

  app.get('/online', async () => (await app.eventHub.presence('feed')).members)

  return app
}
