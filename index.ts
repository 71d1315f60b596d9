import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema, FastifyTypeProvider, RouteGenericInterface, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { ResolveFastifyRequestType } from 'fastify/types/type-provider.js'
import { checkRefusal, StreamAdmission } from './lib/admission.js'
import { EventHub } from './lib/hub.js'
import { EventRuns } from './lib/runs/runs.js'
import { openEventStream, streamStatus } from './lib/open.js'
import { checkEventSchemas, compileHubEvents, type EventSerializers } from './lib/schema-events.js'
import { resolveCompression } from './lib/compress.js'
import { resolveOptions, type FastifyEventStreamOptions, type StreamOptions } from './lib/options.js'
import { StreamRegistry } from './lib/registry.js'
import type { EventMap, EventStream } from './lib/stream.js'
import { FST_SSE_REPLY_SENT } from './lib/errors.js'

export * from './lib/constants.js'
export { CHANNELS, type CloseReason } from './lib/diagnostics.js'
export * from './lib/errors.js'
export { encodeComment, encodeMessage, type EncodedMessage, type MessageData, type MessageOptions } from './lib/encode.js'
export type { FastifyEventStreamOptions, HubOptions, PresenceOptions, RunsOptions, StreamOptions } from './lib/options.js'
export type { TagFilter, Tags } from './lib/filter.js'
export type { Presence, PresenceChange, PresenceMember, PresenceOption, PresenceStore } from './lib/presence.js'
export type { CompressionOptions, StreamEncoding } from './lib/compress.js'
export { StreamAdmission, type AdmissionOptions, type AdmissionStats, type Refusal, type RefusalReason } from './lib/admission.js'
export { EventHub, type HubStats, type PublishOptions, type SubscribeOptions } from './lib/hub.js'
export { eventStreamTransform, type DocumentedAs, type DocumentedRoute, type DocumentTransform } from './lib/openapi.js'
export { MemoryStore, type MemoryStoreOptions } from './lib/stores/memory.js'
export type { EventStore, NewEvent, Replay, StoredEvent, StoreFailure, StoreListener, StoreStats } from './lib/stores/store.js'
export { EventRuns, type ReadOptions, type RunFactory, type RunSource, type RunsStats, type StartedRun, type StartOptions } from './lib/runs/runs.js'
export { MemoryRunStore } from './lib/runs/memory.js'
export { AI_SDK_HEADER, AI_SDK_HEADER_VALUE, RUN_END_EVENT } from './lib/runs/frames.js'
export type { ClaimResult, RunClaim, RunEnd, RunListener, RunPage, RunProtocol, RunRecord, RunState, RunStore, RunWriteResult } from './lib/runs/store.js'
export { EventStream, type ConsumeOptions, type EventMap, type SendOptions } from './lib/stream.js'
export type { JsonItem, MessageItem, Source, SourceItem } from './lib/source.js'
export { EventStreamParser, type ParsedEvent } from './lib/parse.js'
export { injectEventStream, type InjectedEventStream } from './lib/testing.js'

/**
 * Which query parameter carries the last event id, for the types (the `lastEventIdQuery` option at run time):
 * `lastEventId` unless an app names another by augmenting this interface:
 * `declare module 'fastify-event-stream' { interface LastEventIdQuery { name: 'since' } }`.
 */
export interface LastEventIdQuery {}
type QueryName = LastEventIdQuery extends { name: infer Name extends string } ? Name : 'lastEventId'

/**
 * The type of `stream.lastEventId` for a route: its header schema's `last-event-id` (else string), or its
 * querystring schema's last-event-id parameter.
 */
export type LastEventIdOf<Headers, Querystring = unknown> =
  | ('last-event-id' extends keyof Headers ? Exclude<Headers['last-event-id'], undefined> : string)
  | (QueryName extends keyof Querystring ? Exclude<Querystring[QueryName], undefined> : never)

/**
 * The events a route's `schema.events` declares, each typed by the route's type provider as Fastify types a reply
 * from its response schema (TypeBox's `Static`, json-schema-to-ts' `FromSchema`; `unknown` without a provider);
 * EventMap when the route declares none.
 */
export type EventsOfSchema<TypeProvider extends FastifyTypeProvider, SchemaCompiler> =
  SchemaCompiler extends { events: infer Declared extends Record<string, unknown> } ? EventsOf<TypeProvider, Declared> : EventMap

/**
 * Declared events (one JSON schema per event name) typed by a type provider: the event map of the hub's
 * `hub.events`, say, `app.eventHub as EventHub<EventsOf<TypeBoxTypeProvider, typeof events>>`.
 */
export type EventsOf<TypeProvider extends FastifyTypeProvider, Declared extends Record<string, unknown>> =
  { [Name in keyof Declared & string]: (TypeProvider & { schema: Declared[Name] })['serializer'] }

type RequestTypeOf<TypeProvider extends FastifyTypeProvider, SchemaCompiler extends FastifySchema, RouteGeneric extends RouteGenericInterface> =
  ResolveFastifyRequestType<TypeProvider, SchemaCompiler, RouteGeneric>

declare module 'fastify' {
  interface FastifySchema {
    /**
     * An event stream route's events: one JSON schema per event name. `stream.send()` serializes each with the route's
     * serializer compiler (fields the schema does not declare are left out) and sends no other event; with a type
     * provider, `reply.sse()` is typed from them.
     */
    events?: Record<string, unknown>
  }

  interface FastifyInstance {
    /** How many event streams are open on this instance right now. */
    readonly openEventStreams: number
    /** Topics, broadcast encoded once, and replay from Last-Event-ID. */
    readonly eventHub: EventHub
    /** Runs: output that outlives its connection (a model's answer, a job's progress), once per key fleet-wide. */
    readonly eventRuns: EventRuns
    /** Admission control: the caps on open streams (settable while the server runs) and the refusals so far. */
    readonly eventStreamAdmission: StreamAdmission
  }

  // The merged declaration must repeat every type parameter of FastifyReply, used or not.
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  interface FastifyReply<RouteGeneric, RawServer, RawRequest, RawReply, ContextConfig, SchemaCompiler, TypeProvider, ReplyType> {
    /**
     * Opens a Server-Sent Events stream: hijacks the reply, writes the status (argument, else the reply's) and the
     * stream headers, and flushes them at once. Throws FST_SSE_REPLY_SENT, FST_SSE_INVALID_STATUS or (for bad
     * options) FST_SSE_INVALID_OPTION. A stream that admission control refuses is answered here (503 with
     * Retry-After, or a `retry:` hint) and returned already closed: `stream.closed` is true and writes resolve false.
     */
    sse<Events extends EventMap = EventsOfSchema<TypeProvider, SchemaCompiler>> (status?: number, options?: StreamOptions): EventStream<Events, LastEventIdOf<
      RequestTypeOf<TypeProvider, SchemaCompiler, RouteGeneric>['headers'], RequestTypeOf<TypeProvider, SchemaCompiler, RouteGeneric>['query']>>
  }
}

const kStream = Symbol('fastify-event-stream.stream')

type StreamReply = FastifyReply & { [kStream]: EventStream<any, any> | null }
type Handler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown

const plugin: FastifyPluginAsync<FastifyEventStreamOptions> = async (fastify, options) => {
  const { heartbeat, maxBufferedBytes, retry, reconnectWindow, maxStreamAge, lastEventIdQuery, hub: hubOptions, compression, runs: runsOptions } = resolveOptions(options)
  // A stream that ends, for whatever reason, leaves the registry, the hub's topics and its client key's count.
  const registry = new StreamRegistry({ heartbeat, reconnectWindow, maxStreamAge }, stream => {
    hub.unsubscribe(stream)
    admission.release(stream)
  })
  const admission = new StreamAdmission(options.admission ?? {}, reconnectWindow, () => registry.size)
  fastify.decorate('eventStreamAdmission', admission)
  // The hub's declared events compile with the app's serializer compiler once the app is ready (a schema it refuses
  // fails startup), or at the first send() before that.
  let hubSerializers: EventSerializers | undefined
  const { events: hubEvents } = hubOptions
  const serializers = hubEvents === undefined ? undefined : () => (hubSerializers ??= compileHubEvents(fastify, hubEvents))
  const hub = new EventHub({ ...hubOptions, serializers, log: fastify.log, counters: registry })
  if (serializers !== undefined) fastify.addHook('onReady', async () => { serializers() })
  fastify.decorate('openEventStreams', { getter: () => registry.size })
  fastify.decorate('eventHub', hub)
  const runs = new EventRuns({ ...runsOptions, lastEventIdQuery, log: fastify.log })
  fastify.decorate('eventRuns', runs)
  fastify.decorateReply(kStream, null)
  fastify.decorateReply('sse', function sse (this: FastifyReply, status?: number, streamOptions?: StreamOptions) {
    if (this.sent || this.raw.headersSent) throw new FST_SSE_REPLY_SENT()
    // A mistake in the call is an error whether or not the stream would be admitted.
    const code = streamStatus(this, status)
    const streamCompression = streamOptions?.compression === undefined ? compression : resolveCompression(streamOptions.compression, 'sse() compression')
    const refusal = streamOptions?.refusal === undefined ? admission.refusal : checkRefusal('sse() refusal', streamOptions.refusal)
    const { reason, key } = admission.check(this.request, this.server)
    if (reason !== undefined) return admission.refuse(this, reason, refusal, { maxBufferedBytes })
    const stream = openEventStream(this, code, { maxBufferedBytes, retry, registry, lastEventIdQuery, heartbeat, compression: streamCompression })
    admission.hold(stream, key)
    ;(this as StreamReply)[kStream] = stream
    return stream
  })
  fastify.addHook('onRoute', (route: RouteOptions) => {
    checkEventSchemas((route.schema as { events?: unknown } | undefined)?.events, 'schema.events', ` of ${String(route.method)} ${route.url}`)
    route.handler = guard(route.handler as Handler)
  })
  // preClose runs before the server stops accepting: streams end first, so fastify.close() never waits on them.
  // Runs first, so that their readers here get the final event before the streams close.
  fastify.addHook('preClose', async () => {
    await runs.close()
    await registry.closeAll()
  })
  fastify.addHook('onClose', () => hub.close())
}

/** A handler that throws after reply.sse() ends its stream (and logs) instead of leaving it open. */
function guard (handler: Handler): Handler {
  return function guarded (request, reply) {
    let result: unknown
    try {
      result = handler.call(this, request, reply)
    } catch (err) {
      if (endOnError(reply, err)) return
      throw err
    }
    if (!isThenable(result)) return result
    return result.then(undefined, (err: unknown) => {
      if (!endOnError(reply, err)) throw err
    })
  }
}

function endOnError (reply: FastifyReply, err: unknown): boolean {
  const stream = (reply as StreamReply)[kStream]
  if (stream === null) return false
  reply.log.error({ err }, 'event stream handler failed after reply.sse(); closing the stream')
  // close() never rejects.
  stream.close()
  return true
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}

export default fp(plugin, { fastify: '5.x || 6.x', name: 'fastify-event-stream' })
