// `fastify-event-stream/metrics`: the plugin's numbers as Prometheus metrics, with the names operators know from
// Centrifugo. prom-client is an optional peer, loaded only here and only when the app gives no client of its own
// (or has fastify-metrics, whose client and registry are used): an app that does not import this entry point loads
// nothing of it. Counts are read at scrape time from what the plugin counts anyway, so the write path pays nothing
// for them; only publish durations are observed as they happen, through the hub's diagnostics channel.
import diagnostics from 'node:diagnostics_channel'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { CHANNELS, CLOSE_REASONS } from './diagnostics.js'
import { FST_SSE_INVALID_OPTION } from './errors.js'

/** What this plugin needs of a Prometheus registry (prom-client's and @prometheus-io/client's both). */
export interface PrometheusRegistry {
  metrics: () => Promise<string>
  readonly contentType: string
  removeSingleMetric: (name: string) => void
}

/**
 * A Prometheus client library: prom-client, or @prometheus-io/client (fastify-metrics'). Its classes are called with
 * the configurations prom-client documents; any library with those classes will do.
 */
export interface PrometheusClient {
  Gauge: abstract new (...args: never[]) => unknown
  Counter: abstract new (...args: never[]) => unknown
  Histogram: abstract new (...args: never[]) => unknown
  readonly register: PrometheusRegistry
}

interface MetricConfiguration {
  name: string
  help: string
  labelNames?: string[]
  buckets?: number[]
  registers: PrometheusRegistry[]
  collect?: () => void
}

/** The calls this plugin makes on the client's classes. */
interface Client {
  Gauge: new (configuration: MetricConfiguration) => { set: (value: number) => void }
  Counter: new (configuration: MetricConfiguration) => { reset: () => void, inc: ((value: number) => void) & ((labels: Record<string, string>, value: number) => void) }
  Histogram: new (configuration: MetricConfiguration) => { observe: (value: number) => void }
}

export interface EventStreamMetricsOptions {
  /**
   * The Prometheus client library (default: fastify-metrics' when the app registered it, else `prom-client`, which
   * must then be installed).
   */
  client?: PrometheusClient
  /** The registry the metrics go to (default: the client's global one, which fastify-metrics serves at /metrics). */
  registry?: PrometheusRegistry
  /** Prefix of every metric name (default 'sse_'). */
  prefix?: string
  /** A route that serves the registry (`'/metrics'`, say); off by default (fastify-metrics serves its own). */
  endpoint?: string | false
  /** Buckets (seconds) of the publish duration histogram. */
  publishBuckets?: number[]
}

const DEFAULT_PUBLISH_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

const plugin: FastifyPluginAsync<EventStreamMetricsOptions> = async (fastify, options) => {
  const prefix = options.prefix ?? 'sse_'
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) throw new FST_SSE_INVALID_OPTION('metrics prefix', `expected a Prometheus name prefix, got ${String(prefix)}`)
  const endpoint = options.endpoint ?? false
  if (endpoint !== false && (typeof endpoint !== 'string' || !endpoint.startsWith('/'))) throw new FST_SSE_INVALID_OPTION('metrics endpoint', `expected a path or false, got ${String(endpoint)}`)
  const client = options.client ?? (fastify as FastifyInstance & { metrics?: { client?: PrometheusClient } }).metrics?.client ?? await loadPromClient()
  const registry = options.registry ?? client.register
  const names = define(fastify, client as unknown as Client, registry, prefix, options.publishBuckets ?? DEFAULT_PUBLISH_BUCKETS)
  if (endpoint !== false) {
    fastify.get(endpoint, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()))
  }
  fastify.addHook('onClose', async () => {
    names.unsubscribe()
    for (const name of names.defined) registry.removeSingleMetric(name)
  })
}

/** Defines the metrics; returns their names (to remove them on close) and the channel subscription's end. */
function define (fastify: FastifyInstance, client: Client, registry: PrometheusRegistry, prefix: string, buckets: number[]): { defined: string[], unsubscribe: () => void } {
  const registers = [registry]
  const hub = fastify.eventHub
  const defined: string[] = []
  const name = (suffix: string): string => { defined.push(prefix + suffix); return prefix + suffix }
  const openStreams = new client.Gauge({ name: name('node_num_clients'), help: 'Event streams open on this instance.', registers, collect: () => openStreams.set(fastify.openEventStreams) })
  const subscriptions = new client.Gauge({
    name: name('node_num_subscriptions'),
    help: 'Hub subscriptions of open streams, one per topic a stream is subscribed to.',
    registers,
    collect: () => subscriptions.set(Object.values(hub.stats().subscribers).reduce((sum, count) => sum + count, 0))
  })
  const channels = new client.Gauge({ name: name('node_num_channels'), help: 'Hub topics with at least one subscriber here.', registers, collect: () => channels.set(Object.keys(hub.stats().subscribers).length) })
  const pulled = (suffix: string, help: string, value: () => number): void => {
    const counter = new client.Counter({ name: name(suffix), help, registers, collect: () => { counter.reset(); counter.inc(value()) } })
  }
  pulled('transport_connect_count', 'Event streams opened.', () => hub.stats().opened)
  pulled('transport_messages_sent', 'Frames written to event streams (events, comments, heartbeats).', () => hub.stats().sent.messages)
  pulled('transport_messages_sent_size', 'Bytes written to event streams, as sent (compressed where the stream is).', () => hub.stats().sent.bytes)
  pulled('node_messages_published', 'Events published through the hub.', () => hub.stats().published)
  pulled('node_messages_delivered', 'Events handed to subscribed streams (live or replayed).', () => hub.stats().delivered)
  const disconnects = new client.Counter({
    name: name('client_num_disconnects'),
    help: 'Event streams ended, by reason: client (it left), server (closed by the app), slow (cut off), age (maxStreamAge), shutdown, error.',
    labelNames: ['reason'],
    registers,
    collect: () => {
      const { closed } = hub.stats()
      disconnects.reset()
      for (const reason of CLOSE_REASONS) disconnects.inc({ reason }, closed[reason])
    }
  })
  const refusals = new client.Counter({
    name: name('client_connection_limit_reached_total'),
    help: 'New event streams refused by admission control, by reason: streams (maxStreams), key (maxStreamsPerKey), pressure.',
    labelNames: ['reason'],
    registers,
    collect: () => {
      const { refused } = fastify.eventStreamAdmission.stats()
      refusals.reset()
      for (const [reason, count] of Object.entries(refused)) refusals.inc({ reason }, count)
    }
  })
  const lag = new client.Gauge({
    name: name('node_pub_sub_lag_seconds'),
    help: "Seconds from the newest event's append in the store to its delivery here (the Redis store; 0 in memory).",
    registers,
    collect: () => lag.set((hub.stats().store?.lagMs ?? 0) / 1000)
  })
  const durations = new client.Histogram({ name: name('node_broadcast_duration_seconds'), help: 'Seconds from hub.publish() to the store keeping the event.', buckets, registers })
  const observe = (message: unknown): void => {
    const { hub: from, duration } = message as { hub: unknown, duration: number }
    if (from === hub) durations.observe(duration / 1000)
  }
  diagnostics.subscribe(CHANNELS.hubPublish, observe)
  return { defined, unsubscribe: () => diagnostics.unsubscribe(CHANNELS.hubPublish, observe) }
}

async function loadPromClient (): Promise<PrometheusClient> {
  try {
    // CommonJS: its module.exports is the default export.
    return (await import('prom-client') as unknown as { default: PrometheusClient }).default
  } catch (err) {
    throw new FST_SSE_INVALID_OPTION('metrics client', `install prom-client (or register fastify-metrics first, or pass client): ${(err as Error).message}`)
  }
}

/** Prometheus metrics of the plugin: register after fastify-event-stream (and after fastify-metrics, if the app has it). */
export const eventStreamMetrics = fp(plugin, { fastify: '5.x || 6.x', name: 'fastify-event-stream-metrics', dependencies: ['fastify-event-stream'] })
export default eventStreamMetrics
