import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { MemoryStore, injectEventStream } from '../index.js'
import { buildNewsroom } from '../examples/newsroom.js'
import { get, readUntil, startDemo } from './helpers.js'

/** The news items in a chunk of the stream, with their ids. */
function news (body: string): Array<{ id: string, n: number }> {
  return [...body.matchAll(/id: (\d+)\nevent: news\ndata: \{"n":(\d+),/g)].map(match => ({ id: match[1], n: Number(match[2]) }))
}

async function readNews (response: IncomingMessage, count: number): Promise<Array<{ id: string, n: number }>> {
  let body = ''
  while (news(body).length < count) body += await readUntil(response, 'event: news')
  return news(body)
}

t.test('the live demo: broadcast chat and news, resume after a drop or a reload, resync, clean shutdown', async t => {
  const { child, url } = await startDemo(t, 10)
  const page = await readUntil(await get(`${url}/`), '</html>')
  t.match(page, /import \{ connect \} from '\/client\/index\.js'/)
  for (const path of ['/client/index.js', '/client/client.js', '/client/errors.js', '/client/tabs.js', '/parse.js']) {
    const script = await fetch(url + path)
    t.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8', path)
    t.match(await script.text(), /^(import|export|\/\/|\/\*)/m, `${path}: a module`)
  }
  t.same(await (await fetch(`${url}/instance`)).json(), { name: 'single', instances: [] }, 'one instance: the page stays on its origin')

  const first = await get(`${url}/events`)
  t.equal(first.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.match(await readUntil(first, '\n\nid: '), /^retry: 1000\n\nid: /, 'the retry hint, then the position frame')
  const post = (room: string, body: object): Promise<Response> => fetch(`${url}/rooms/${room}/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
  })
  const posted = await post('general', { name: 'ada', text: 'hello, room' })
  t.equal(posted.status, 201)
  const { id } = await posted.json() as { id: string }
  const chat = await readUntil(first, '"hello, room"')
  t.match(chat, new RegExp(`id: ${id}\\nevent: chat\\ndata: \\{"room":"general","name":"ada","text":"hello, room","time":"[^"]+"\\}\\n\\n`))
  t.equal((await post('nope', { name: 'ada', text: 'x' })).status, 400, 'unknown room')
  t.equal((await post('random', { name: 'ada', text: '' })).status, 400, 'empty text')

  const before = await readNews(first, 3)
  first.destroy()
  // Away for a few ticks, then back with Last-Event-ID (as EventSource reconnects) and with ?lastEventId= (as the
  // page does after a reload): both continue the news from the next number, with no gap.
  await new Promise(resolve => setTimeout(resolve, 100))
  const last = before[before.length - 1]
  for (const resumed of [await get(`${url}/events`, { 'last-event-id': last.id }), await get(`${url}/events?lastEventId=${last.id}`)]) {
    const after = await readNews(resumed, 8)
    t.same(after.map(item => item.n), Array.from({ length: after.length }, (_, i) => last.n + 1 + i), 'continuous news')
    t.ok(after.every(item => BigInt(item.id) > BigInt(last.id)))
    resumed.destroy()
  }

  const stale = await get(`${url}/events`, { 'last-event-id': '12345' })
  t.match(await readUntil(stale, ']}\n\n'), /^retry: 1000\n\nid: \d+\nevent: resync\ndata: \{"lastEventId":"12345","topics":\["room:general","room:random","news"\]\}\n\n/)
  const stats = await (await fetch(`${url}/stats`)).json() as { openStreams: number, subscribers: Record<string, number>, published: number }
  t.equal(stats.openStreams, 1)
  t.same(stats.subscribers, { 'room:general': 1, 'room:random': 1, news: 1 })
  t.ok(stats.published > 10)
  const dropped = await fetch(`${url}/drop`, { method: 'POST' })
  t.same(await dropped.json(), { dropped: 1 })
  stale.resume()
  await once(stale, 'end')

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM closes the server cleanly')
})

t.test('a newsroom instance that only serves: the store it is given, where the others are, no news of its own', async t => {
  const store = new MemoryStore()
  const app = await buildNewsroom({ tickMs: 0, store, name: 'B', instances: () => [{ name: 'A', url: 'http://a.example' }, { name: 'B', url: 'http://b.example' }] })
  t.teardown(() => app.close())
  const instance = await app.inject('/instance')
  t.same(instance.json(), { name: 'B', instances: [{ name: 'A', url: 'http://a.example' }, { name: 'B', url: 'http://b.example' }] })
  t.equal(instance.headers['access-control-allow-origin'], '*', 'the other instances\' pages may read it')
  await store.append('news', { data: '{"n":1}', event: 'news' })
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(app.eventHub.stats().published, 0, 'no news published by this instance')
  t.same((await store.readAfter(['news'], '0')).events, null)
})

t.test('the demo assistant: an answer streamed as a run, resumed after its last word, cancelled by Stop', async t => {
  const app = await buildNewsroom({ tickMs: 0, wordMs: 5 })
  t.teardown(() => app.close())
  const ask = async (question: string): Promise<string> => {
    const response = await app.inject({ method: 'POST', url: '/assistant', payload: { question } })
    t.equal(response.statusCode, 201)
    return response.json().key
  }
  const { answerTo } = await import('../examples/assistant.js')
  const key = await ask('why?')
  const first = await injectEventStream(app, `/assistant/${key}`)
  const words: string[] = []
  let lastEventId = ''
  for await (const event of first) {
    words.push(event.data)
    lastEventId = event.lastEventId
    if (words.length === 3) break
  }
  const rest = await injectEventStream(app, { url: `/assistant/${key}?lastEventId=${lastEventId}` })
  let end = ''
  for await (const event of rest) {
    if (event.type === 'end') end = event.data
    else words.push(event.data)
  }
  t.same(words, answerTo('why?'), 'every word once, in order, across the reconnect')
  t.equal(end, '{"reason":"done"}')
  t.equal((await app.inject({ method: 'POST', url: '/assistant', payload: {} })).statusCode, 400)

  const stopped = await ask('and this?')
  const reading = await injectEventStream(app, `/assistant/${stopped}`)
  const events: string[] = []
  for await (const event of reading) {
    events.push(event.type)
    if (events.length === 2) t.same((await app.inject({ method: 'DELETE', url: `/assistant/${stopped}` })).json(), { cancelled: true })
  }
  t.equal(events.at(-1), 'end')
  t.ok(events.length < answerTo('and this?').length, 'cancelled before its end')
  t.match((await app.inject('/stats')).json(), { runs: { running: 0, started: 2 } })
})
