// The demo's assistant in Chromium: an answer streamed as a run survives a reload mid-answer (the page reads on from
// its last word with this package's client), and Stop cancels it.
import t from 'tap'
import { answerTo } from '../../examples/assistant.js'
import { startDemo } from '../helpers.js'
import { launchChromium } from './chromium.js'

const SCREENSHOTS = process.env.SCREENSHOTS ?? '/tmp/fastify-event-stream-live'

t.test('the assistant: reload mid-answer resumes it whole; Stop cancels the next one', async t => {
  const { url } = await startDemo(t, 100)
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  await page.goto(url)
  await page.fill('#question', 'what is a run?')
  await page.click('#ask button[type="submit"], #ask button:not(#stop)')
  await page.waitForFunction(() => (document.getElementById('answer')?.textContent ?? '').split(' ').length >= 8)
  const before = await page.locator('#answer').textContent()
  await page.reload()
  await page.locator('#answer-state.done').waitFor({ timeout: 20_000 })
  const full = answerTo('what is a run?').join('')
  t.equal(await page.locator('#answer').textContent(), full, 'every word once, in order, across the reload')
  t.ok(full.startsWith(before ?? '-'), `the page had "${before}" before the reload`)
  await page.screenshot({ path: `${SCREENSHOTS}-assistant.png` })

  await page.fill('#question', 'and a long one?')
  await page.click('#ask button:not(#stop)')
  await page.waitForFunction(() => (document.getElementById('answer')?.textContent ?? '').split(' ').length >= 5)
  await page.click('#stop')
  await page.locator('#answer-state.cancelled').waitFor()
  const cut = await page.locator('#answer').textContent() ?? ''
  t.ok(cut.length < answerTo('and a long one?').join('').length, 'cancelled before its end')
  await page.reload()
  await page.locator('#answer-state.cancelled').waitFor()
  t.equal(await page.locator('#answer').textContent(), cut, 'a finished answer stays as it was after a reload')
})
