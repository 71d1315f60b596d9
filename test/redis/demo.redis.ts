// `REDIS_URL=… npm start`: the newsroom as two instances sharing one Redis, over HTTP and in Chromium.
import { once } from 'node:events'
import type { Page } from 'playwright-core'
import t from 'tap'
import { launchChromium } from '../browser/chromium.js'
import { startDemo } from '../helpers.js'
import { SHARED_REDIS, sseClient, uniquePrefix, until } from './helpers.js'

interface Instance { name: string, url: string }

async function demo (t: Parameters<typeof startDemo>[0], tickMs: number): Promise<{ child: Awaited<ReturnType<typeof startDemo>>['child'], a: Instance, b: Instance }> {
  const { child, url } = await startDemo(t, tickMs, { REDIS_URL: SHARED_REDIS, REDIS_PREFIX: uniquePrefix(t) })
  let info = { name: '', instances: [] as Instance[] }
  // B starts listening just after A.
  await until(async () => (info = await (await fetch(`${url}/instance`)).json() as typeof info).instances.length === 2, 'both instances')
  const { name, instances } = info
  t.equal(name, 'A', 'the first port serves instance A')
  t.same(instances.map(instance => instance.name), ['A', 'B'])
  return { child, a: instances[0], b: instances[1] }
}

t.test('two instances on one Redis: chat posted to A reaches B; a stream dropped on A resumes on B without a gap', async t => {
  const { child, a, b } = await demo(t, 20)
  t.not(a.url, b.url, 'two ports')
  const onB = await sseClient(t, `${b.url}/events`)
  await until(() => onB.lastEventId() !== '', 'the position frame')
  const posted = await fetch(`${a.url}/rooms/general/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ada', text: 'from A' })
  })
  const { id } = await posted.json() as { id: string }
  await until(() => onB.events.some(event => event.type === 'chat'), 'the chat on B')
  const chat = onB.events.find(event => event.type === 'chat')
  t.equal(chat?.lastEventId, id, 'same id on B as A returned')
  t.match(JSON.parse(chat?.data ?? '{}'), { room: 'general', name: 'ada', text: 'from A' })

  const onA = await sseClient(t, `${a.url}/events`)
  await until(() => onA.events.filter(event => event.type === 'news').length >= 3, 'news on A')
  t.same(await (await fetch(`${a.url}/drop`, { method: 'POST' })).json(), { dropped: 1 })
  await onA.ended
  await new Promise(resolve => setTimeout(resolve, 100))
  const resumed = await sseClient(t, `${b.url}/events?lastEventId=${onA.lastEventId()}`)
  await until(() => resumed.events.filter(event => event.type === 'news').length >= 8, 'news on B')
  const numbers = [...onA.events, ...resumed.events].filter(event => event.type === 'news').map(event => JSON.parse(event.data).n as number)
  t.ok(numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1), `news continuous from A to B: ${numbers.join(' ')}`)
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM closes both instances cleanly')
})

/** The news numbers on the page, oldest first. */
async function newsNumbers (page: Page): Promise<number[]> {
  const metas = await page.locator('#news li .meta').allTextContents()
  return metas.map(meta => Number(meta.slice(1))).reverse()
}

t.test('in Chromium: the page shows its instance; after a drop it moves to the other one and resumes without a gap', async t => {
  const { a } = await demo(t, 100)
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage()
  await page.goto(a.url)
  await page.locator('#status.open').waitFor()
  t.equal(await page.locator('#instance').textContent(), 'instance A')
  await page.waitForFunction(() => document.querySelectorAll('#news li').length >= 5)
  await page.click('#drop')
  await page.locator('#instance', { hasText: 'instance B' }).waitFor()
  await page.locator('#status.open').waitFor()
  await page.waitForFunction(() => document.querySelectorAll('#news li.replayed').length > 0 &&
    document.querySelector('#news li')?.classList.contains('live'))
  const numbers = await newsNumbers(page)
  t.ok(numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1), `news continuous from A to B: ${numbers.join(' ')}`)
  t.equal(await page.locator('li.gap').count(), 0)
  const screenshot = `${process.env.SCREENSHOTS ?? '/tmp/fastify-event-stream-live'}-instances.png`
  await page.screenshot({ path: screenshot })
  t.pass(`screenshot at ${screenshot}`)
})
