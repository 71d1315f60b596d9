// Chromium's own EventSource against admission control: refused the SSE way it comes back by itself once a slot
// frees; refused with a 503 it gives up for good, which is why the `retry` refusal exists.
import t, { type Test } from 'tap'
import type { EventStream, Refusal } from '../../index.js'
import { build, listen } from '../helpers.js'
import { launchChromium } from './chromium.js'

async function capped (t: Test, refusal: Refusal): Promise<{ base: string, streams: EventStream[], refused: () => number }> {
  const app = await build(t, { admission: { maxStreams: 1, refusal, retryWindow: [200, 300] } })
  const streams: EventStream[] = []
  app.get('/', async (_request, reply) => reply.type('text/html').send('<!doctype html><title>admission</title>'))
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    if (stream.closed) return
    streams.push(stream)
    stream.message(`welcome ${streams.length}`)
  })
  return { base: await listen(app), streams, refused: () => app.eventStreamAdmission.stats().refused.streams }
}

t.test("EventSource refused with 'retry' reconnects by itself and is admitted once a slot frees", async t => {
  const { base, streams, refused } = await capped(t, 'retry')
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(base)
  await page.evaluate(() => {
    const w = window as unknown as { first: EventSource, got: string[] }
    w.got = []
    w.first = new EventSource('/events')
    w.first.onmessage = event => w.got.push(`first: ${event.data as string}`)
  })
  await page.waitForFunction(() => (window as unknown as { got: string[] }).got.length === 1)
  const second = page.evaluate(async () => await new Promise<string>(resolve => {
    const source = new EventSource('/events')
    source.onmessage = event => { source.close(); resolve(event.data) }
  }))
  // The second is refused while the first holds the one slot: it keeps coming back every 200-300 ms.
  while (refused() < 3) await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(streams.length, 1, 'still one stream open after refusals')
  await page.evaluate(() => { (window as unknown as { first: EventSource }).first.close() })
  t.equal(await second, 'welcome 2', 'the refused EventSource came back by itself and was admitted')
})

t.test('EventSource refused with a 503 gives up for good (readyState CLOSED, no reconnection)', async t => {
  const { base } = await capped(t, 'status')
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(base)
  const states = await page.evaluate(async () => {
    const first = new EventSource('/events')
    await new Promise(resolve => { first.onmessage = resolve })
    const second = new EventSource('/events')
    await new Promise(resolve => { second.onerror = resolve })
    first.close()
    await new Promise(resolve => setTimeout(resolve, 1000))
    return [second.readyState, EventSource.CLOSED]
  })
  t.equal(states[0], states[1], 'closed, and not reopened after the slot freed')
})
