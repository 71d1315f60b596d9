/** The request header a reconnecting client sends with the id of the last event it received. */
export const LAST_EVENT_ID_HEADER = 'last-event-id'

export const CONTENT_TYPE_HEADER = 'content-type'
export const CONTENT_TYPE_VALUE = 'text/event-stream; charset=utf-8'

/** HTTP/1.x only: connection-specific headers are illegal in HTTP/2. */
export const CONNECTION_HEADER = 'connection'
export const CONNECTION_VALUE = 'keep-alive'

/** no-cache so that intermediaries do not cache or buffer the stream. */
export const CACHE_CONTROL_HEADER = 'cache-control'
export const CACHE_CONTROL_VALUE = 'no-cache'

/**
 * Says the heartbeat interval (ms), so that a client can tell a silent dead connection from a quiet stream: this
 * plugin's client reconnects after three intervals without a byte.
 */
export const HEARTBEAT_HEADER = 'event-stream-heartbeat'

/** Stops nginx from buffering the response. */
export const ACCEL_BUFFERING_HEADER = 'x-accel-buffering'
export const ACCEL_BUFFERING_VALUE = 'no'

export const DEFAULT_HEARTBEAT_MS = 15_000
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
/** The window of the reconnect hint a stream gets when the server ends it: clients come back spread over 1-10 s. */
export const DEFAULT_RECONNECT_WINDOW: readonly [number, number] = [1000, 10_000]

/**
 * How long close() waits for a client to take the bytes still queued before the socket is destroyed,
 * so that neither close() nor fastify.close() waits on a client that stopped reading.
 */
export const CLOSE_GRACE_MS = 2_000

/** The event type of the in-band message that tells a client its Last-Event-ID cannot be resumed from. */
export const RESYNC_EVENT = 'resync'
export const DEFAULT_HISTORY_SIZE = 1000
export const DEFAULT_HISTORY_AGE_MS = 5 * 60_000

export const DEFAULT_RUN_TTL_MS = 10 * 60_000
export const DEFAULT_RUN_LEASE_MS = 10_000
export const DEFAULT_RUN_MAX_BYTES = 4 * 1024 * 1024
export const DEFAULT_MAX_RUNS = 1000

/** Milliseconds an instance's presence entries live in a shared store without renewal (renewed every third of it). */
export const DEFAULT_PRESENCE_TTL_MS = 30_000
