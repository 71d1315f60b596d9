// Chromium's own EventSource reads the conformance cases. Run with `npm run test:browser`: it needs Debian's
// chromium at /usr/bin/chromium (.ci/run installs it); no browser is ever downloaded.
import type { Page } from 'playwright-core'
import t from 'tap'
import { cases, collectEvents, expectedBy, type Received } from '../conformance/cases.js'
import { conformanceServer } from '../conformance/server.js'
import { listen } from '../helpers.js'
import { launchChromium } from './chromium.js'

/** Runs collectEvents in the page, with the browser's own EventSource. */
async function collectInPage (page: Page, url: string, types: string[]): Promise<Received[]> {
  return await page.evaluate(async ({ source, url, types }) => {
    // eslint-disable-next-line no-new-func
    const collect = new Function(`return (${source})`)()
    return await collect(EventSource, url, types, 8000)
  }, { source: collectEvents.toString(), url, types })
}

t.test('Chromium sees exactly what was sent', async t => {
  const app = await conformanceServer()
  t.teardown(() => app.close())
  const base = await listen(app)
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${base}/`)
  t.ok(/Chrome\/\d+/.test(await page.evaluate(() => navigator.userAgent)), 'a real Chromium')
  for (const [name, testCase] of Object.entries(cases)) {
    t.same(await collectInPage(page, `${base}/case/${name}`, testCase.types), expectedBy('chromium', testCase.expected), name)
  }
  t.same(await collectInPage(page, `${base}/reconnect`, []), [
    { type: 'message', data: 'one', lastEventId: 'r1' },
    { type: 'message', data: 'two', lastEventId: 'r2' },
    { type: 'message', data: 'resumed after r2', lastEventId: 'r3' }
  ], 'after the server closed, Chromium reconnected with Last-Event-ID and stream.lastEventId read it')
  t.same(await collectInPage(page, `${base}/resume?topic=chromium`, []), [
    { type: 'message', data: 'missed 1', lastEventId: 'chromium-1' },
    { type: 'message', data: 'missed 2', lastEventId: 'chromium-2' }
  ], 'an id-only frame set the Last-Event-ID Chromium resumed from')
  const retry = 400
  const events = await collectInPage(page, `${base}/retry?token=chromium&ms=${retry}`, ['waited'])
  const waited = events[events.length - 1]
  t.equal(waited.type, 'waited')
  const ms = Number(waited.data)
  t.ok(ms >= retry * 0.9 && ms < 2500, `Chromium waited the retry hint: ${ms} ms for ${retry} ms`)
})
