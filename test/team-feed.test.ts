// The README's team feed (examples/team-feed.ts) with real clients: private notes stay in their team, the online
// list follows who comes and goes, and each user sees the others' join and leave.
import t from 'tap'
import { EventStreamParser, type ParsedEvent } from '../index.js'
import { buildTeamFeed } from '../examples/team-feed.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { get, listen, until } from './helpers.js'

t.test('the team feed: private notes reach their team only, public ones everyone; who is online', async t => {
  const app = await buildTeamFeed()
  t.teardown(() => app.close())
  const base = await listen(app)
  const open = async (user: string, team: string): Promise<{ events: ParsedEvent[], close: () => void }> => {
    const response = await get(`${base}/feed?user=${user}&team=${team}`)
    const events: ParsedEvent[] = []
    const parser = new EventStreamParser(event => events.push(event))
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => parser.feed(chunk))
    t.teardown(() => response.destroy())
    return { events, close: () => response.destroy() }
  }
  const ann = await open('ann', 'a')
  const bob = await open('bob', 'b')
  while ((await app.eventHub.presenceCount('feed')) < 2) await sleep(5)
  const post = async (user: string, team: string, text: string, only = false): Promise<void> => {
    const response = await app.inject({ method: 'POST', url: `/notes?user=${user}&team=${team}`, payload: { text, private: only } })
    t.equal(response.statusCode, 200)
  }
  await post('ann', 'a', 'hello all')
  await post('ann', 'a', 'team a only', true)
  await post('bob', 'b', 'team b only', true)
  await post('bob', 'b', 'bye all')
  const notes = (events: ParsedEvent[]): string[] => events.filter(event => event.type === 'note').map(event => JSON.parse(event.data).text as string)
  await until(() => notes(ann.events).length === 3 && notes(bob.events).length === 3, 'the notes')
  t.same(notes(ann.events), ['hello all', 'team a only', 'bye all'])
  t.same(notes(bob.events), ['hello all', 'team b only', 'bye all'])
  const online = await app.inject('/online')
  t.same(online.json(), [{ id: 'ann', info: { name: 'Ann', team: 'a' }, streams: 1 }, { id: 'bob', info: { name: 'Bob', team: 'b' }, streams: 1 }])
  bob.close()
  await until(() => ann.events.some(event => event.type === 'leave'), 'bob\'s leave')
  t.same(ann.events.filter(event => event.type === 'join' || event.type === 'leave').map(event => `${event.type} ${JSON.parse(event.data).id as string}`),
    ['join ann', 'join bob', 'leave bob'])
  t.same((await app.inject('/online')).json(), [{ id: 'ann', info: { name: 'Ann', team: 'a' }, streams: 1 }])
})
