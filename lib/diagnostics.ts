import diagnostics from 'node:diagnostics_channel'

/**
 * The plugin's `node:diagnostics_channel` channels, as Fastify and undici publish theirs: subscribe with
 * `diagnostics_channel.subscribe(CHANNELS.streamClose, message => …)`. A channel without subscribers costs a check.
 */
export const CHANNELS = {
  /** A stream opened: `{ stream, request }`. */
  streamOpen: 'fastify-event-stream:stream:open',
  /** A stream ended: `{ stream, reason }` (see CloseReason). */
  streamClose: 'fastify-event-stream:stream:close',
  /** A new stream was refused by admission control: `{ request, reason }` ('streams', 'key' or 'pressure'). */
  streamRefused: 'fastify-event-stream:stream:refused',
  /** A hub publish was kept by the store: `{ hub, topic, id, duration }` (ms from the call to the store's answer). */
  hubPublish: 'fastify-event-stream:hub:publish',
  /** A tick's events were handed to subscribers' streams: `{ hub, deliveries }` (events times streams). */
  hubDeliver: 'fastify-event-stream:hub:deliver',
  /** The Redis store delivered an event from Redis: `{ lag }` (ms from its append, by Redis's clock, to here). */
  storeLag: 'fastify-event-stream:store:lag'
} as const

/**
 * Why a stream ended: its client left (`client`), the handler closed it (`server`), it was cut off as too slow
 * (`slow`), it reached maxStreamAge (`age`), the server shut down (`shutdown`), or its response failed (`error`).
 */
export type CloseReason = 'client' | 'server' | 'slow' | 'age' | 'shutdown' | 'error'
export const CLOSE_REASONS: readonly CloseReason[] = ['client', 'server', 'slow', 'age', 'shutdown', 'error']

export const streamOpen = diagnostics.channel(CHANNELS.streamOpen)
export const streamClose = diagnostics.channel(CHANNELS.streamClose)
export const streamRefused = diagnostics.channel(CHANNELS.streamRefused)
export const hubPublish = diagnostics.channel(CHANNELS.hubPublish)
export const hubDeliver = diagnostics.channel(CHANNELS.hubDeliver)
export const storeLag = diagnostics.channel(CHANNELS.storeLag)
