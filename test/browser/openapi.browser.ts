// @fastify/swagger-ui in Chromium shows a stream route documented by eventStreamTransform() (OpenAPI 3.2's
// itemSchema): the route's 200 is text/event-stream, and the example is the stream's events, one per declared event.
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import { Type } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import t from 'tap'
import fastifyEventStream, { eventStreamTransform } from '../../index.js'
import { listen } from '../helpers.js'
import { launchChromium } from './chromium.js'

t.test('swagger-ui shows a stream route as text/event-stream with its events', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySwagger, { openapi: { openapi: '3.2.0', info: { title: 'shop', version: '1.0.0' } }, transform: eventStreamTransform() })
  await app.register(fastifySwaggerUi, { routePrefix: '/documentation' })
  await app.register(fastifyEventStream, { heartbeat: false })
  app.get('/orders', {
    schema: {
      summary: 'order feed',
      events: { order: Type.Object({ id: Type.String(), total: Type.Number() }), cancelled: Type.Object({ id: Type.String() }) }
    }
  }, (_request, reply) => { reply.sse() })
  const base = await listen(app)
  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${base}/documentation/static/index.html`)
  await page.locator('.opblock-summary', { hasText: '/orders' }).click()
  const response = page.locator('.response', { hasText: 'text/event-stream' }).first()
  await response.waitFor()
  t.match(await response.innerText(), /^200\s/, 'the 200 response')
  t.equal(await response.locator('select').first().inputValue(), 'text/event-stream')
  const example = await response.locator('.microlight, .example').first().innerText()
  t.same(JSON.parse(example).map((item: { event: string, data: string }) => [item.event, JSON.parse(item.data)]), [
    ['order', { id: 'string', total: 0 }],
    ['cancelled', { id: 'string' }]
  ], 'the example: one item per declared event, its data the event\'s JSON')
})
