// fastify-event-stream/client: the other end of the stream, for browsers and Node. It imports nothing of the server
// but the parser and the event-map type, and nothing of Node: a page loads these files as they are.
import type { EventMap } from '../events.js'
import { EventClient, type ConnectOptions } from './client.js'

export { EventClient, type ClientEvent, type ConnectOptions, type EventData, type EventName, type EventOf, type IdStorage, type Resync } from './client.js'
export { EventClientError, type ClientErrorCode } from './errors.js'
export type { ClientState } from './tabs.js'
export type { EventMap }

/**
 * Opens an event stream and keeps it open: `connect<Events>(url)` with the event map the server's route uses.
 * Throws FST_SSE_CLIENT_INVALID_OPTION for options that cannot work.
 */
export function connect<Events extends EventMap = EventMap> (url: string | URL | (() => string | URL), options?: ConnectOptions): EventClient<Events> {
  return new EventClient<Events>(url, options)
}
