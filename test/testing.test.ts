import t from 'tap'
import { injectEventStream, type EventStream } from '../index.js'
import { build } from './helpers.js'

t.test('injectEventStream: status, headers and parsed events of multi-line, JSON and commented streams', async t => {
  const app = await build(t, { retry: 500 })
  app.get('/events', async (_request, reply) => {
    const stream = reply.sse<{ tick: { n: number } }>(201)
    await stream.comment('hello')
    await stream.message('line one\r\nline two\rline three\n')
    await stream.send('tick', { n: 1 }, { id: 'a' })
    await stream.comment('between')
    await stream.message('\ufeffkept', { retry: 20 })
    await stream.close()
  })
  const response = await injectEventStream(app, '/events')
  t.equal(response.statusCode, 201)
  t.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8')
  const events = []
  for await (const event of response) events.push(event)
  t.same(events, [
    { type: 'message', data: 'line one\nline two\nline three\n', lastEventId: '' },
    { type: 'tick', data: '{"n":1}', lastEventId: 'a', id: 'a' },
    { type: 'message', data: '\ufeffkept', lastEventId: 'a', retry: 20 }
  ])
  t.same(JSON.parse(events[1].data), { n: 1 })
})

t.test('injectEventStream: leaving the loop ends the route\'s stream, as a client leaving would', async t => {
  const app = await build(t)
  let stream: EventStream | undefined
  app.get('/endless', (_request, reply) => {
    stream = reply.sse()
    let n = 0
    const timer = setInterval(() => stream?.message(String(n++)), 1)
    stream.signal.addEventListener('abort', () => clearInterval(timer))
  })
  const seen: string[] = []
  for await (const event of await injectEventStream(app, { url: '/endless', headers: { 'last-event-id': '9' } })) {
    seen.push(event.data)
    if (seen.length === 3) break
  }
  t.same(seen, ['0', '1', '2'])
  t.equal(stream?.lastEventId, '9')
  t.equal(stream?.signal.aborted, true)
  t.equal(app.openEventStreams, 0)
})

t.test('injectEventStream: close() without iterating, and a route that is not a stream', async t => {
  const app = await build(t)
  let stream: EventStream | undefined
  app.get('/open', (_request, reply) => { stream = reply.sse() })
  app.get('/json', async () => ({ plain: true }))
  const open = await injectEventStream(app, '/open')
  await open.close()
  await open.close()
  t.equal(stream?.closed, true)
  const json = await injectEventStream(app, '/json')
  t.equal(json.statusCode, 200)
  const events = []
  for await (const event of json) events.push(event)
  t.same(events, [], 'no events in a JSON body')
})
