import SerializerSelector from '@fastify/fast-json-stringify-compiler'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { FST_SSE_INVALID_EVENT, FST_SSE_INVALID_OPTION } from './errors.js'

/** An event's payload to its data, made from the event's schema by the route's serializer compiler. */
export type EventSerializer = (payload: unknown) => string
/** The serializers of declared events, by event name, and where they were declared (for errors). */
export interface EventSerializers {
  readonly byName: ReadonlyMap<string, EventSerializer>
  /** `schema.events` of a route, or `hub.events`. */
  readonly declaredIn: string
}
/** Declared events: one JSON schema per event name. */
export type EventSchemas = Readonly<Record<string, object>>

/**
 * Checks declared events (a route's `schema.events` when the route is declared, the plugin's `hub.events` at
 * registration): an object of one JSON schema (an object) per event name, each name a valid SSE event name. Throws
 * FST_SSE_INVALID_OPTION, so a mistake stops the app at startup. The error names them `<option><where>`
 * (`schema.events of GET /orders`, `hub.events`), and an event `<option>.<name><where>`.
 */
export function checkEventSchemas (events: unknown, option: string, where = ''): void {
  if (events === undefined) return
  if (typeof events !== 'object' || events === null || Array.isArray(events)) {
    throw new FST_SSE_INVALID_OPTION(option + where, 'expected an object of one JSON schema per event name')
  }
  for (const [name, schema] of Object.entries(events)) {
    if (name === '' || /[\r\n]/.test(name)) throw new FST_SSE_INVALID_OPTION(option + where, `${JSON.stringify(name)} is not an event name (a non-empty line)`)
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
      throw new FST_SSE_INVALID_OPTION(`${option}.${name}${where}`, 'expected a JSON schema (an object)')
    }
  }
}

/**
 * The hub's serializers for `hub.events`, compiled by the app's serializer compiler: its own
 * (`setSerializerCompiler()`), else Fastify's default one, fast-json-stringify with the app's shared schemas
 * (`addSchema()`), as a route's would be. Throws FST_SSE_INVALID_OPTION for a schema the compiler refuses.
 */
export function compileHubEvents (fastify: FastifyInstance, events: EventSchemas): EventSerializers {
  const compiler = fastify.serializerCompiler ?? SerializerSelector()(fastify.getSchemas())
  const byName = new Map<string, EventSerializer>()
  for (const [name, schema] of Object.entries(events)) {
    try {
      byName.set(name, compiler({ schema, method: 'GET', url: `hub.events.${name}`, httpStatus: '200' }) as EventSerializer)
    } catch (err) {
      throw new FST_SSE_INVALID_OPTION(`hub.events.${name}`, `the serializer compiler refused its schema: ${(err as Error).message}`)
    }
  }
  return { byName, declaredIn: 'hub.events' }
}

/**
 * Per route (keyed by its config object, one per route): its events' serializers, compiled on the first stream the
 * route opens. Two routes that share one events object may have different serializer compilers, so each compiles.
 */
const compiled = new WeakMap<object, EventSerializers>()

/**
 * The serializers of the route's declared events, compiled once per route by its serializer compiler (Fastify's
 * fast-json-stringify unless the app set another), or undefined when the route declares none.
 */
export function routeEventSerializers (reply: FastifyReply): EventSerializers | undefined {
  const { schema, config } = reply.routeOptions as { schema?: { events?: Record<string, Record<string, unknown>> }, config: object }
  const events = schema?.events
  if (events === undefined) return undefined
  let serializers = compiled.get(config)
  if (serializers === undefined) {
    serializers = {
      byName: new Map(Object.entries(events).map(([name, eventSchema]) => [name, reply.compileSerializationSchema(eventSchema) as EventSerializer])),
      declaredIn: 'the route\'s schema.events'
    }
    compiled.set(config, serializers)
  }
  return serializers
}

/** The data of an event whose events are declared: FST_SSE_INVALID_EVENT for one not declared, or a payload its schema refuses. */
export function serializeEvent (serializers: EventSerializers, event: string, payload: unknown): string {
  const serialize = serializers.byName.get(event)
  if (serialize === undefined) throw new FST_SSE_INVALID_EVENT(event, `${serializers.declaredIn} does not declare it`)
  try {
    return serialize(payload)
  } catch (err) {
    throw new FST_SSE_INVALID_EVENT(event, (err as Error).message, { cause: err })
  }
}
