// The client (fastify-event-stream/client) in Chromium, served as the build has it, against the real server over
// HTTP/1.1: headers refreshed on each reconnect, a reload resumes with no gap, eight tabs share one connection and
// hand it over with no gap, offline and online. Run with `npm run test:browser` after `npm run build`.
import Fastify, { type FastifyInstance } from 'fastify'
import type { BrowserContext, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import fastifyEventStream, { type EventStream } from '../../index.js'
import { serveClient } from '../../examples/newsroom.js'
import { listen, until } from '../helpers.js'
import { blackholeProxy } from '../blackhole.js'
import { launchChromium } from './chromium.js'

// The page: a client configured from its query string, and what it got, kept in the page (and across reloads in
// sessionStorage when it stores its id).
const PAGE = `<!doctype html><meta charset="utf-8"><title>client</title><script type="module">
import { connect } from '/client/index.js'
const params = new URLSearchParams(location.search)
const keep = params.has('storage')
window.got = keep ? JSON.parse(sessionStorage.getItem('got') ?? '[]') : []
window.states = []
let token = Number(sessionStorage.getItem('token') ?? 0)
const client = window.client = connect('/events', {
  headers: async () => {
    sessionStorage.setItem('token', String(++token))
    return { authorization: 'Bearer ' + token }
  },
  storage: keep ? 'session' : undefined,
  share: params.has('share'),
  retry: Number(params.get('retry') ?? 300)
})
client.on('tick', data => {
  window.got.push(data.n)
  if (keep) sessionStorage.setItem('got', JSON.stringify(window.got))
})
client.onState((state, error) => window.states.push(error === undefined ? state : state + ' ' + error.code))
</script>`

interface Request { authorization: string | undefined, lastEventId: string | undefined }

async function start (t: Test, retry = 300, heartbeat?: number): Promise<{ app: FastifyInstance, url: string, requests: Request[], drop: () => Promise<void> }> {
  const app = Fastify({ forceCloseConnections: true })
  await app.register(fastifyEventStream, { retry, heartbeat })
  t.teardown(() => app.close())
  const requests: Request[] = []
  const streams = new Set<EventStream>()
  app.get('/', (_request, reply) => { reply.type('text/html; charset=utf-8').send(PAGE) })
  serveClient(app)
  app.get('/events', async (request, reply) => {
    requests.push({ authorization: request.headers.authorization, lastEventId: request.headers['last-event-id'] as string | undefined })
    const stream = reply.sse()
    streams.add(stream)
    stream.signal.addEventListener('abort', () => streams.delete(stream))
    await app.eventHub.subscribe(stream, ['ticks'])
  })
  let n = 0
  const timer = setInterval(() => { app.eventHub.send('ticks', 'tick', { n: ++n }).catch(() => {}) }, 20)
  app.addHook('preClose', async () => clearInterval(timer))
  const drop = async (): Promise<void> => { await Promise.all(Array.from(streams, stream => stream.close())) }
  return { app, url: await listen(app), requests, drop }
}

async function context (t: Test): Promise<BrowserContext> {
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  return await browser.newContext()
}

const got = async (page: Page): Promise<number[]> => await page.evaluate(() => (window as unknown as { got: number[] }).got)
const states = async (page: Page): Promise<string[]> => await page.evaluate(() => (window as unknown as { states: string[] }).states)
const clientState = async (page: Page): Promise<string> => await page.evaluate(() => (window as unknown as { client: { state: string } }).client.state)

/** Consecutive numbers: every event once, in order. */
function consecutive (numbers: number[]): boolean {
  return numbers.length > 0 && numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1)
}

async function gotAtLeast (page: Page, count: number): Promise<void> {
  await page.waitForFunction(count => (window as unknown as { got: number[] }).got.length >= count, count)
}

t.test('the headers function runs before each connection: the reconnect carries a fresh token and the last id', async t => {
  const { url, requests, drop } = await start(t)
  const page = await (await context(t)).newPage()
  await page.goto(url)
  await gotAtLeast(page, 5)
  await drop()
  await page.waitForFunction(() => (window as unknown as { states: string[] }).states.filter(state => state === 'open').length === 2)
  const before = (await got(page)).length
  await gotAtLeast(page, before + 5)
  t.same(requests.map(request => request.authorization), ['Bearer 1', 'Bearer 2'])
  t.equal(requests[0].lastEventId, undefined)
  t.ok(requests[1].lastEventId !== undefined, `resumed from ${requests[1].lastEventId}`)
  t.ok(consecutive(await got(page)), 'no gap across the drop')
  t.same(await states(page), ['open', 'connecting', 'open'])
})

t.test('a reload resumes from the stored id with no gap', async t => {
  const { url, requests } = await start(t)
  const page = await (await context(t)).newPage()
  await page.goto(url + '/?storage')
  await gotAtLeast(page, 10)
  await page.reload()
  await page.waitForFunction(() => (window as unknown as { client: { state: string } }).client.state === 'open')
  const before = (await got(page)).length
  await gotAtLeast(page, before + 10)
  const numbers = await got(page)
  t.ok(consecutive(numbers), `continuous across the reload: ${numbers.length} events, ${numbers[0]}..${numbers.at(-1)}`)
  t.equal(requests.length, 2)
  t.ok(requests[1].lastEventId !== undefined, 'the new page\'s first request carries the stored id')
})

t.test('eight tabs on HTTP/1.1 share one connection; closing the leader hands it over with no gap', async t => {
  const { app, url, requests } = await start(t)
  const browser = await context(t)
  const tabs: Page[] = []
  for (let i = 0; i < 8; i++) {
    const page = await browser.newPage()
    await page.goto(url + '/?share')
    tabs.push(page)
  }
  for (const tab of tabs) await gotAtLeast(tab, 3)
  t.equal(app.openEventStreams, 1, 'one stream for eight tabs (a browser allows six connections per host)')
  const leaders = await Promise.all(tabs.map(async tab => await tab.evaluate(() => (window as unknown as { client: { leader: boolean } }).client.leader)))
  t.same(leaders, [true, false, false, false, false, false, false, false])
  for (let handover = 0; handover < 3; handover++) {
    await tabs.shift()?.close()
    const [first] = tabs
    await first.waitForFunction(() => (window as unknown as { client: { leader: boolean, state: string } }).client.leader)
    const counts = await Promise.all(tabs.map(async tab => (await got(tab)).length))
    for (const [i, tab] of tabs.entries()) await gotAtLeast(tab, counts[i] + 5)
  }
  await until(() => app.openEventStreams === 1, 'one stream again')
  t.equal(requests.length, 4, 'one request per leader')
  t.ok(requests.slice(1).every(request => request.lastEventId !== undefined), 'each new leader resumes from the last id')
  for (const [i, tab] of tabs.entries()) {
    const numbers = await got(tab)
    t.ok(consecutive(numbers), `tab ${i + 4}: ${numbers.length} events, ${numbers[0]}..${numbers.at(-1)}, none missed or repeated`)
    t.equal(await clientState(tab), 'open')
  }
})

t.test('offline ends the connection; online reconnects at once, not after the retry', async t => {
  const { url, requests } = await start(t, 60_000)
  const browser = await context(t)
  const page = await browser.newPage()
  await page.goto(url)
  await gotAtLeast(page, 3)
  await browser.setOffline(true)
  await page.waitForFunction(() => (window as unknown as { client: { state: string } }).client.state === 'connecting')
  const offlineAt = Date.now()
  await new Promise(resolve => setTimeout(resolve, 300))
  await browser.setOffline(false)
  await page.waitForFunction(() => (window as unknown as { client: { state: string } }).client.state === 'open')
  t.ok(Date.now() - offlineAt < 10_000, `back within ${Date.now() - offlineAt} ms, where the server's retry is 60 s`)
  const before = (await got(page)).length
  await gotAtLeast(page, before + 5)
  t.ok(consecutive(await got(page)), 'no gap across the time offline')
  t.equal(requests.length, 2)
  t.match((await states(page))[1], /^connecting FST_SSE_CLIENT_NETWORK$/)
})

t.test('a connection that goes silent without the browser noticing (blackholed) is given up after three heartbeats and resumed with no gap', async t => {
  const { url, requests } = await start(t, 300, 200)
  const proxy = await blackholeProxy(t, Number(new URL(url).port))
  const browser = await context(t)
  const page = await browser.newPage()
  await page.goto(proxy.url)
  await gotAtLeast(page, 5)
  // The events' connection stays open and carries nothing; the browser sees no error and no offline event.
  proxy.blackhole('/events')
  const silentAt = Date.now()
  await page.waitForFunction(() => (window as unknown as { states: string[] }).states.includes('connecting FST_SSE_CLIENT_IDLE'))
  const noticed = Date.now() - silentAt
  // Three heartbeats of 200 ms after the last byte (the ticks come every 20 ms).
  t.ok(noticed >= 400 && noticed < 5000, `given up after ${noticed} ms of silence`)
  await page.waitForFunction(() => (window as unknown as { client: { state: string } }).client.state === 'open')
  const before = (await got(page)).length
  await gotAtLeast(page, before + 5)
  t.ok(consecutive(await got(page)), 'no gap across the dead connection')
  t.equal(requests.length, 2, 'one reconnection, after the server\'s retry as for any stream that ended')
  t.ok(requests[1].lastEventId !== undefined, 'with its last id')
})
