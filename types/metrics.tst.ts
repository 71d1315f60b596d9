import Fastify from 'fastify'
import promClient from 'prom-client'
import { expect, test } from 'tstyche'
import fastifyEventStream, { CHANNELS, type CloseReason, type HubStats } from 'fastify-event-stream'
import eventStreamMetrics, { type EventStreamMetricsOptions, type PrometheusClient, type PrometheusRegistry } from 'fastify-event-stream/metrics'

const app = Fastify()
app.register(fastifyEventStream)

test('the metrics plugin takes prom-client, a registry, a prefix and an endpoint', () => {
  expect(app.register).type.toBeCallableWith(eventStreamMetrics)
  expect(app.register).type.toBeCallableWith(eventStreamMetrics, { client: promClient, registry: new promClient.Registry(), prefix: 'app_', endpoint: '/metrics' })
  expect(app.register).type.toBeCallableWith(eventStreamMetrics, { endpoint: false, publishBuckets: [0.001, 0.01] })
  expect(app.register).type.not.toBeCallableWith(eventStreamMetrics, { endpoint: true })
  expect(app.register).type.not.toBeCallableWith(eventStreamMetrics, { client: {} })
  expect<typeof promClient>().type.toBeAssignableTo<PrometheusClient>()
  expect<promClient.Registry>().type.toBeAssignableTo<PrometheusRegistry>()
  expect<EventStreamMetricsOptions['prefix']>().type.toBe<string | undefined>()
})

test('diagnostics channel names and the stats behind the metrics', () => {
  expect(CHANNELS.streamClose).type.toBe<'fastify-event-stream:stream:close'>()
  expect<HubStats['closed']>().type.toBe<Readonly<Record<CloseReason, number>>>()
  expect<HubStats['sent']>().type.toBe<{ messages: number, bytes: number }>()
  expect<CloseReason>().type.toBe<'client' | 'server' | 'slow' | 'age' | 'shutdown' | 'error'>()
})
