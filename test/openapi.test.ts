import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import { Validator } from '@seriousme/openapi-schema-validator'
import { Type } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import fastifyEventStream, { eventStreamTransform, type DocumentedAs, type DocumentTransform } from '../index.js'
import { get, listen, readAll } from './helpers.js'

const price = Type.Object({ symbol: Type.String(), price: Type.Number() })
const halt = { type: 'object', properties: { symbol: { type: 'string' }, until: { $ref: 'instant#' } }, required: ['symbol'] }

/** An app with @fastify/swagger writing OpenAPI `version`, @fastify/swagger-ui, and three routes: two streams and a JSON one. */
async function documented (openapi: string | undefined, transform?: DocumentTransform): Promise<FastifyInstance> {
  const app = Fastify()
  app.addSchema({ $id: 'instant', type: 'string', format: 'date-time' })
  await app.register(fastifySwagger, {
    ...(openapi === undefined ? { swagger: { info: { title: 'prices', version: '1.0.0' } } } : { openapi: { openapi, info: { title: 'prices', version: '1.0.0' } } }),
    transform: eventStreamTransform(transform)
  })
  await app.register(fastifySwaggerUi, { routePrefix: '/documentation' })
  await app.register(fastifyEventStream, { heartbeat: false })
  app.get('/prices', { schema: { events: { price, halt }, response: { 401: { type: 'object', properties: { message: { type: 'string' } } } } } }, (_request, reply) => {
    reply.sse().send('price', { symbol: 'ACME', price: 1 }).catch(() => {})
  })
  app.get('/ticks', { schema: { events: { tick: { type: 'integer' } } } }, (_request, reply) => { reply.sse() })
  // A stream route that documents its 200 itself keeps it.
  app.get('/own', { schema: { events: { tick: { type: 'integer' } }, response: { 200: { description: 'mine', type: 'string' } } } }, (_request, reply) => { reply.sse() })
  app.get('/health', async () => 'ok')
  app.get('/json', { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  return app
}

/** The document as @fastify/swagger-ui serves it, over a real socket, and what the OpenAPI schema of its version says of it. */
async function served (app: FastifyInstance): Promise<{ doc: any, valid: boolean, errors: unknown }> {
  const doc = JSON.parse(await readAll(await get(`${await listen(app)}/documentation/json`)))
  const validator = new Validator()
  const result = await validator.validate(structuredClone(doc))
  return { doc, valid: result.valid, errors: result.errors }
}

const item = (name: string, data: object): object => ({
  type: 'object',
  properties: { event: { type: 'string', enum: [name] }, data, id: { type: 'string' }, retry: { type: 'integer', minimum: 0 } },
  required: ['event', 'data']
})

t.test('OpenAPI 3.2: a stream route is text/event-stream with an itemSchema per event, and the document validates', async t => {
  const { doc, valid, errors } = await served(await documented('3.2.0'))
  t.ok(valid, JSON.stringify(errors))
  t.equal(doc.openapi, '3.2.0')
  const prices = doc.paths['/prices'].get.responses
  const media = prices['200'].content['text/event-stream']
  const json = { type: 'string', contentMediaType: 'application/json' }
  t.match(media.itemSchema, {
    oneOf: [
      item('price', { ...json, contentSchema: { type: 'object', properties: { symbol: { type: 'string' }, price: { type: 'number' } }, required: ['symbol', 'price'] } }),
      item('halt', { ...json, contentSchema: { type: 'object', properties: { symbol: { type: 'string' }, until: { $ref: String } } } })
    ]
  })
  // The app's shared schema that an event refers to is in the document's components, and the reference points at it.
  const until = media.itemSchema.oneOf[1].properties.data.contentSchema.properties.until.$ref as string
  t.match(until, /^#\/components\/schemas\//)
  t.same(doc.components.schemas[until.split('/').at(-1) as string], { type: 'string', format: 'date-time', title: 'instant' })
  t.same(media.schema, { type: 'array', items: media.itemSchema }, 'schema: the stream as an array of its items')
  t.match(prices['401'].content['application/json'].schema, { type: 'object' }, 'the route\'s other responses stay')
  t.same(doc.paths['/ticks'].get.responses['200'].content['text/event-stream'].itemSchema, item('tick', { ...json, contentSchema: { type: 'integer' } }))
  t.equal(doc.paths['/own'].get.responses['200'].description, 'mine')
  t.notOk(doc.paths['/own'].get.responses['200'].content['text/event-stream'])
  t.ok(doc.paths['/json'].get.responses['200'].content['application/json'], 'a JSON route is untouched')
})

t.test('OpenAPI 3.1 and 3.0: the same items as the schema of an array, in each version\'s form, and the documents validate', async t => {
  const modern = await served(await documented('3.1.0'))
  t.ok(modern.valid, JSON.stringify(modern.errors))
  const media31 = modern.doc.paths['/ticks'].get.responses['200'].content['text/event-stream']
  t.same(media31, { schema: { type: 'array', items: item('tick', { type: 'string', contentMediaType: 'application/json', contentSchema: { type: 'integer' } }) } })

  const old = await served(await documented('3.0.3'))
  t.ok(old.valid, JSON.stringify(old.errors))
  const media30 = old.doc.paths['/ticks'].get.responses['200'].content['text/event-stream']
  t.same(media30, { schema: { type: 'array', items: item('tick', { type: 'integer', description: 'sent as JSON text' }) } })
})

t.test('Swagger 2.0: a stream route produces text/event-stream, a string', async t => {
  const { doc, valid, errors } = await served(await documented(undefined))
  t.ok(valid, JSON.stringify(errors))
  const ticks = doc.paths['/ticks'].get
  t.same(ticks.produces, ['text/event-stream'])
  t.match(ticks.responses['200'], { schema: { type: 'string' } })
})

t.test('eventStreamTransform wraps the app\'s own transform, which runs first', async t => {
  const seen: string[] = []
  const { doc, valid } = await served(await documented('3.2.0', ({ schema, url }) => {
    seen.push(url)
    // @fastify/swagger takes a result without a schema as the route's own.
    if (url === '/ticks') return { url: '/v1/ticks' } as DocumentedAs
    return { schema: { ...schema, summary: `route ${url}` }, url }
  }))
  t.ok(valid)
  t.ok(seen.includes('/ticks') && seen.includes('/json'))
  t.ok(doc.paths['/health'].get, 'a route without a schema is documented as before')
  t.ok(doc.paths['/v1/ticks'].get.responses['200'].content['text/event-stream'].itemSchema)
  t.equal(doc.paths['/prices'].get.summary, 'route /prices')
  t.ok(doc.paths['/prices'].get.responses['200'].content['text/event-stream'].itemSchema)
  t.equal(doc.paths['/json'].get.summary, 'route /json')
})
