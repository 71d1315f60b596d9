import type { FastifyReply } from 'fastify'
import { FST_SSE_INVALID_EVENT, FST_SSE_INVALID_OPTION } from './errors.js'

/** An event's payload to its data, made from the event's schema by the route's serializer compiler. */
export type EventSerializer = (payload: unknown) => string
/** The serializers of a route's declared events, by event name. */
export type EventSerializers = ReadonlyMap<string, EventSerializer>

/**
 * Checks a route's `schema.events` when the route is declared: an object of one JSON schema (an object) per event
 * name, each name a valid SSE event name. Throws FST_SSE_INVALID_OPTION, so a mistake stops the app at startup.
 */
export function checkEventSchemas (events: unknown, route: string): void {
  if (events === undefined) return
  if (typeof events !== 'object' || events === null || Array.isArray(events)) {
    throw new FST_SSE_INVALID_OPTION(`schema.events of ${route}`, 'expected an object of one JSON schema per event name')
  }
  for (const [name, schema] of Object.entries(events)) {
    if (name === '' || /[\r\n]/.test(name)) throw new FST_SSE_INVALID_OPTION(`schema.events of ${route}`, `${JSON.stringify(name)} is not an event name (a non-empty line)`)
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
      throw new FST_SSE_INVALID_OPTION(`schema.events.${name} of ${route}`, 'expected a JSON schema (an object)')
    }
  }
}

/** Per route schema: its events' serializers, compiled on the first stream the route opens. */
const compiled = new WeakMap<object, EventSerializers>()

/**
 * The serializers of the route's declared events, compiled once per route by its serializer compiler (Fastify's
 * fast-json-stringify unless the app set another), or undefined when the route declares none.
 */
export function routeEventSerializers (reply: FastifyReply): EventSerializers | undefined {
  const schema = reply.routeOptions.schema as { events?: Record<string, Record<string, unknown>> } | undefined
  const events = schema?.events
  if (events === undefined) return undefined
  let serializers = compiled.get(events)
  if (serializers === undefined) {
    serializers = new Map(Object.entries(events).map(([name, eventSchema]) => [name, reply.compileSerializationSchema(eventSchema) as EventSerializer]))
    compiled.set(events, serializers)
  }
  return serializers
}

/** The data of an event sent on a route that declares its events: FST_SSE_INVALID_EVENT for one it does not declare, or a payload its schema refuses. */
export function serializeEvent (serializers: EventSerializers, event: string, payload: unknown): string {
  const serialize = serializers.get(event)
  if (serialize === undefined) throw new FST_SSE_INVALID_EVENT(event, 'the route\'s schema.events does not declare it')
  try {
    return serialize(payload)
  } catch (err) {
    throw new FST_SSE_INVALID_EVENT(event, (err as Error).message, { cause: err })
  }
}
