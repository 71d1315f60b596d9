import { createError } from '@fastify/error'

/** An id, event or comment holds CR or LF (or an id holds NUL), or a field has the wrong type. Nothing was written. */
export const FST_SSE_INVALID_FIELD = createError('FST_SSE_INVALID_FIELD', 'Invalid SSE field: %s', 500, TypeError)

/** reply.sse() was called on a reply that was already sent or hijacked. */
export const FST_SSE_REPLY_SENT = createError('FST_SSE_REPLY_SENT', 'Cannot open an event stream: the reply was already sent or hijacked', 500)

/** reply.sse(status) with a status that is not an integer in 200-599. */
export const FST_SSE_INVALID_STATUS = createError('FST_SSE_INVALID_STATUS', 'Invalid event stream status: %s (expected an integer in 200-599)', 500, RangeError)

/**
 * A new stream was refused by admission control (maxStreams, maxStreamsPerKey, or pressure): the client is told to
 * come back later (503 with Retry-After, or a `retry:` hint). The code of the 503's body.
 */
export const FST_SSE_REFUSED = createError('FST_SSE_REFUSED', 'The event stream was refused: %s; retry later', 503)

/** A plugin option failed validation at registration. */
export const FST_SSE_INVALID_OPTION = createError('FST_SSE_INVALID_OPTION', 'Invalid fastify-event-stream option %s: %s', 500, TypeError)

/** stream.consume() was given something that is not an async iterable, an iterable or a Readable of items. */
export const FST_SSE_INVALID_SOURCE = createError('FST_SSE_INVALID_SOURCE', 'Invalid event source: expected an async iterable, an iterable or a Readable of messages', 500, TypeError)

/** A hub topic that is not a non-empty string, or subscribe() given no topics. */
export const FST_SSE_INVALID_TOPIC = createError('FST_SSE_INVALID_TOPIC', 'Invalid event hub topic: %s', 500, TypeError)

/** A publisher's id that the hub cannot use as a position: it looks like a store-assigned id, or is already in the history. */
export const FST_SSE_INVALID_ID = createError('FST_SSE_INVALID_ID', 'Invalid event hub id: %s', 500, TypeError)

/** hub.subscribe() for a stream that is already subscribed. */
export const FST_SSE_ALREADY_SUBSCRIBED = createError('FST_SSE_ALREADY_SUBSCRIBED', 'This event stream is already subscribed to the hub', 500)

/** A publish after the hub (and its store) closed with the Fastify instance. */
export const FST_SSE_HUB_CLOSED = createError('FST_SSE_HUB_CLOSED', 'The event hub is closed', 500)

/** The store did not answer in time (Redis unreachable, say): the event may or may not have been kept. */
export const FST_SSE_STORE_UNAVAILABLE = createError('FST_SSE_STORE_UNAVAILABLE', 'The event store is unavailable: %s', 503)

/** The store lost its history (Redis flushed, restarted without persistence, or failed over to a replica behind). */
export const FST_SSE_STORE_RESET = createError('FST_SSE_STORE_RESET', 'The event store lost its history: %s', 503)

/** The store's live delivery missed events that its history no longer keeps: the listeners must resume or resync. */
export const FST_SSE_STORE_GAP = createError('FST_SSE_STORE_GAP', 'The event store cannot deliver a topic without a gap: %s', 503)

/** A run key that is not 1-128 letters, digits and `_ - . : @` (it becomes part of store keys). */
export const FST_SSE_INVALID_RUN_KEY = createError('FST_SSE_INVALID_RUN_KEY', 'Invalid run key: %s', 400, TypeError)

/** runs.start() for a key whose run is running (on this instance or another) with `ifRunning: 'error'`. */
export const FST_SSE_RUN_ACTIVE = createError('FST_SSE_RUN_ACTIVE', 'A run is already running under the key %s', 409)

/** runs.start() for a key whose run ended and is still kept (until its TTL, or runs.delete(), or `replace: true`). */
export const FST_SSE_RUN_ENDED = createError('FST_SSE_RUN_ENDED', 'The run under the key %s ended and is kept until its TTL: delete it or start with replace', 409)

/** runs.start() while this instance runs `maxRuns` runs already. */
export const FST_SSE_RUN_LIMIT = createError('FST_SSE_RUN_LIMIT', 'Too many runs on this instance (maxRuns %s)', 503)

/** A run was started, read or cancelled after the Fastify instance began to close. */
export const FST_SSE_RUNS_CLOSED = createError('FST_SSE_RUNS_CLOSED', 'Runs are closed: the server is shutting down', 503)

/** stream.send() of an event that the route's schema.events does not declare, or whose payload its schema refuses: nothing is sent. */
export const FST_SSE_INVALID_EVENT = createError('FST_SSE_INVALID_EVENT', 'Invalid event %s: %s', 500, TypeError)

/** A publish's tags that are not an object of up to 32 string values under names of 1-64 characters (values up to 256). */
export const FST_SSE_INVALID_TAGS = createError('FST_SSE_INVALID_TAGS', 'Invalid event hub tags: %s', 500, TypeError)

/** A subscriber's filter with an unknown operator, a value that is not a string, or too deep (8 levels) or too large (256 operators and values). */
export const FST_SSE_INVALID_FILTER = createError('FST_SSE_INVALID_FILTER', 'Invalid event hub filter: %s', 500, TypeError)

/** A subscriber's presence that is not `'count'` or `{ id, info? }` with an id of 1-128 characters and info of at most 1 KiB as JSON. */
export const FST_SSE_INVALID_PRESENCE = createError('FST_SSE_INVALID_PRESENCE', 'Invalid event hub presence: %s', 500, TypeError)
