import type { FastifySchema } from 'fastify'

/** What `@fastify/swagger` passes a `transform`: the route's schema and URL, the route, and the document so far. */
export interface DocumentedRoute {
  schema: FastifySchema | undefined
  url: string
  route: { schema?: FastifySchema }
  /** In OpenAPI mode: the document, whose `openapi` is the version it is written in. */
  openapiObject?: { openapi?: string }
  /** In Swagger 2.0 mode. */
  swaggerObject?: unknown
}

/** What a `@fastify/swagger` transform returns: the schema and URL to document the route with. */
export interface DocumentedAs { schema: FastifySchema, url: string }

/** A `@fastify/swagger` transform (its own `SwaggerTransform` type fits). */
export type DocumentTransform<Input extends DocumentedRoute = DocumentedRoute> = (route: Input) => DocumentedAs

type JsonSchema = Record<string, unknown>

const DESCRIPTION = 'An event stream (Server-Sent Events): one item per event, its data the JSON of the event\'s schema.'

/**
 * A `transform` for `@fastify/swagger` that documents every event stream route that declares `schema.events`: its
 * 200 response becomes `text/event-stream` with one item schema per event (`event`, `data`, `id`, `retry`), in the
 * form of the document's version: OpenAPI 3.2's `itemSchema` (with `schema` as the stream of items), else 3.1's
 * `schema` of an array of items whose `data` is a string of JSON (`contentMediaType`, `contentSchema`), or 3.0's, whose
 * `data` is the event's schema. A route's own `response[200]` is left as it is. Wraps the app's own transform
 * (TypeBox's or a zod type provider's, say), which runs first.
 */
export function eventStreamTransform<Input extends DocumentedRoute = DocumentedRoute> (transform?: DocumentTransform<Input>): DocumentTransform<Input> {
  return input => {
    // What @fastify/swagger does without a transform: the route's own schema and URL.
    const result = transform === undefined ? { schema: input.schema as FastifySchema, url: input.url } : transform(input)
    const schema = (result.schema ?? input.schema) as (FastifySchema & { response?: Record<string, unknown> }) | undefined
    const events = (input.route.schema as { events?: Record<string, JsonSchema> } | undefined)?.events
    if (schema === undefined || events === undefined || schema.response?.['200'] !== undefined) return result
    const version = input.openapiObject?.openapi
    if (version === undefined) {
      // Swagger 2.0 cannot describe a stream's items: a string of `text/event-stream`.
      const produces = (schema as { produces?: unknown }).produces ?? ['text/event-stream']
      return { ...result, schema: { ...schema, produces, response: { ...schema.response, 200: { description: DESCRIPTION, type: 'string' } } } as FastifySchema }
    }
    return { ...result, schema: { ...schema, response: { ...schema.response, 200: openapiResponse(events, version) } } }
  }
}

/** The 200 response of an event stream route in an OpenAPI document of `version`. */
function openapiResponse (events: Record<string, JsonSchema>, version: string): JsonSchema {
  const [major, minor] = version.split('.').map(Number)
  const modern = major > 3 || minor >= 1
  const items = Object.entries(events).map(([name, schema]): JsonSchema => ({
    type: 'object',
    properties: {
      event: { type: 'string', enum: [name] },
      data: modern ? { type: 'string', contentMediaType: 'application/json', contentSchema: schema } : { ...schema, description: 'sent as JSON text' },
      id: { type: 'string' },
      retry: { type: 'integer', minimum: 0 }
    },
    required: ['event', 'data']
  }))
  const item = items.length === 1 ? items[0] : { oneOf: items }
  const media: JsonSchema = { schema: { type: 'array', items: item } }
  if (major > 3 || minor >= 2) media.itemSchema = item
  return { description: DESCRIPTION, content: { 'text/event-stream': media } }
}
