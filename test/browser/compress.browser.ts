// Chromium's own EventSource reads a compressed stream event by event: each event is received before the server
// writes the next, the response was compressed (Content-Encoding as the browser saw it), and a clean end of the
// compressed body is no error (the EventSource reconnects as after any end, it never reports a decoding failure).
import Fastify from 'fastify'
import t from 'tap'
import fastifyEventStream, { type EventStream } from '../../index.js'
import { listen, until } from '../helpers.js'
import { launchChromium } from './chromium.js'

for (const encoding of ['gzip', 'deflate'] as const) {
  t.test(`Chromium's EventSource reads a ${encoding} stream event by event`, async t => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyEventStream, { heartbeat: false, compression: { encodings: [encoding] } })
    const streams: EventStream[] = []
    const encodings: Array<string | undefined> = []
    app.get('/', (_request, reply) => reply.type('text/html').send('<!doctype html><title>compressed</title>'))
    app.get('/events', (request, reply) => {
      encodings.push(request.headers['accept-encoding'])
      streams.push(reply.sse(200))
    })
    const base = await listen(app)
    const browser = await launchChromium()
    t.teardown(() => browser.close())
    const page = await browser.newPage()
    await page.goto(`${base}/`)
    const seen = page.waitForResponse(`${base}/events`)
    await page.evaluate(() => {
      const state = { received: [] as string[], errors: 0, opened: 0 }
      ;(globalThis as unknown as { state: typeof state }).state = state
      const source = new EventSource('/events')
      source.onopen = () => { state.opened++ }
      source.onmessage = event => { state.received.push(event.data) }
      source.onerror = () => { state.errors++ }
    })
    const response = await seen
    t.equal((await response.allHeaders())['content-encoding'], encoding, 'the browser got a compressed response')
    t.match(encodings[0], new RegExp(encoding), 'Chromium offered the coding')
    const received = async (): Promise<string[]> => await page.evaluate(() => (globalThis as unknown as { state: { received: string[] } }).state.received)
    await until(() => streams.length === 1, 'connected')
    for (let n = 1; n <= 5; n++) {
      await streams[0].send('message', { n, note: 'repeated text compresses well, repeated text compresses well' }, { id: n })
      // Nothing more is written until the page has this event.
      await page.waitForFunction(count => (globalThis as unknown as { state: { received: string[] } }).state.received.length >= count, n, { timeout: 5000 })
      const got = await received()
      t.equal(got.length, n, `event ${n} received before the next is written`)
    }
    t.same((await received()).map(data => JSON.parse(data).n), [1, 2, 3, 4, 5])
    await streams[0].close()
    // EventSource reconnects after the end, with Last-Event-ID: a clean end, then a second connection.
    await until(() => streams.length === 2, 'reconnected after the clean end')
    t.equal((streams[1].lastEventId as string), '5')
    await streams[1].close()
  })
}
