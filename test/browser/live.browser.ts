// The `npm start` demo in Chromium: chat broadcast to two tabs, the news feed continuous across a dropped connection
// and a page reload. Run with `npm run test:browser` (Debian's chromium at /usr/bin/chromium; nothing downloaded).
import type { Page } from 'playwright-core'
import { once } from 'node:events'
import t from 'tap'
import { startDemo } from '../helpers.js'
import { launchChromium } from './chromium.js'

const SCREENSHOTS = process.env.SCREENSHOTS ?? '/tmp/fastify-event-stream-live'

/** The news numbers on the page, oldest first. */
async function newsNumbers (page: Page): Promise<number[]> {
  const metas = await page.locator('#news li .meta').allTextContents()
  return metas.map(meta => Number(meta.slice(1))).reverse()
}

function consecutive (numbers: number[]): boolean {
  return numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1)
}

t.test('the live demo in Chromium: broadcast, resume after a drop and after a reload', async t => {
  const { child, url } = await startDemo(t, 100)
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } })
  const [page, other] = [await context.newPage(), await context.newPage()]
  for (const tab of [page, other]) {
    await tab.goto(url)
    await tab.locator('#status.open').waitFor()
  }

  await page.fill('#name', 'Ada')
  await page.dispatchEvent('#name', 'change')
  await page.fill('form[data-room="general"] input', 'Hello from one tab')
  await page.click('form[data-room="general"] button')
  for (const tab of [page, other]) await tab.locator('#room-general li', { hasText: 'Hello from one tab' }).waitFor()
  t.match(await other.locator('#room-general li').first().textContent(), /Ada\s*Hello from one tab/, 'the other tab got it too')
  await other.close()

  await page.waitForFunction(() => document.querySelectorAll('#news li').length >= 5)
  await page.click('#drop')
  await page.locator('#status.reconnecting').waitFor()
  await page.locator('#status.open').waitFor()
  await page.waitForFunction(() => document.querySelectorAll('#news li.replayed').length > 0 &&
    document.querySelector('#news li')?.classList.contains('live'))
  let numbers = await newsNumbers(page)
  t.ok(consecutive(numbers), `news continuous across the drop: ${numbers.join(' ')}`)
  t.equal(await page.locator('li.gap').count(), 0)
  await page.screenshot({ path: `${SCREENSHOTS}-after-drop.png` })

  await page.click('#reload')
  await page.locator('#status.open').waitFor()
  await page.waitForFunction(() => document.querySelectorAll('#news li.restored').length > 0 &&
    document.querySelectorAll('#news li.live').length >= 3)
  numbers = await newsNumbers(page)
  t.ok(consecutive(numbers), `news continuous across the reload: ${numbers.join(' ')}`)
  t.match(await page.locator('#room-general li.restored').first().textContent(), /Hello from one tab/, 'chat restored')
  await page.fill('form[data-room="random"] input', 'Back after a reload')
  await page.click('form[data-room="random"] button')
  await page.locator('#room-random li.live', { hasText: 'Back after a reload' }).waitFor()
  await page.waitForFunction(() => /frames delivered/.test(document.getElementById('stats')?.textContent ?? ''))
  await page.screenshot({ path: `${SCREENSHOTS}-after-reload.png` })
  t.pass(`screenshots at ${SCREENSHOTS}-*.png`)

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
})
