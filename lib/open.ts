import { routeEventSerializers } from './schema-events.js'
import type { FastifyReply } from 'fastify'
import {
  ACCEL_BUFFERING_HEADER, ACCEL_BUFFERING_VALUE, CACHE_CONTROL_HEADER, CACHE_CONTROL_VALUE, CONNECTION_HEADER,
  CONNECTION_VALUE, CONTENT_TYPE_HEADER, CONTENT_TYPE_VALUE, HEARTBEAT_HEADER, LAST_EVENT_ID_HEADER
} from './constants.js'
import { negotiateEncoding, StreamEncoder, type ResolvedCompression } from './compress.js'
import { streamOpen } from './diagnostics.js'
import { encodeRetry } from './encode.js'
import { FST_SSE_INVALID_STATUS } from './errors.js'
import type { StreamRegistry } from './registry.js'
import { EventStream, kFinish, type RawResponse } from './stream.js'

export interface OpenSettings {
  maxBufferedBytes: number
  retry: number | undefined
  registry: StreamRegistry
  lastEventIdQuery: string | false
  /** Compression for this stream (the route's, else the plugin's), undefined when off. */
  compression: ResolvedCompression | undefined
  /** The heartbeat interval (ms), said in a header; false when there is none. */
  heartbeat: number | false
}

type Headers = Record<string, number | string | string[] | undefined>

/** Headers that describe a body of known length or encoding: wrong on an event stream. */
const DROPPED_HEADERS = ['content-length', 'content-encoding']
/** Connection-specific headers, which HTTP/2 forbids. */
const HTTP2_DROPPED_HEADERS = [...DROPPED_HEADERS, 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']

/** The status a stream opens with (the reply's unless given), else FST_SSE_INVALID_STATUS. */
export function streamStatus (reply: FastifyReply, status: number | undefined): number {
  const code = status ?? reply.statusCode
  if (!Number.isInteger(code) || code < 200 || code > 599) throw new FST_SSE_INVALID_STATUS(String(code))
  return code
}

/** Hijacks the reply, writes status and headers at once, and returns the stream. */
export function openEventStream (reply: FastifyReply, code: number, settings: OpenSettings): EventStream<any, any> {
  // reply.sse() checked the reply (not sent) and the status, before admission control.
  const raw = reply.raw as unknown as RawResponse & {
    writeHead (status: number, headers: Headers): unknown
    hasHeader (name: string): boolean
    removeHeader (name: string): void
    flushHeaders (): void
  }
  reply.hijack()
  const request = reply.request
  const { compression } = settings
  const encoding = compression === undefined ? undefined : negotiateEncoding(request.headers['accept-encoding'], compression.encodings)
  const headers = streamHeaders(reply, raw)
  if (compression !== undefined) {
    // Caches must tell clients apart by what they accept, whatever this one got.
    headers.vary = appendName(headers.vary, 'Accept-Encoding')
    if (encoding !== undefined) headers['content-encoding'] = encoding
  }
  if (settings.heartbeat !== false) {
    headers[HEARTBEAT_HEADER] = String(settings.heartbeat)
    // A cross-origin page reads a response header only when CORS exposes it.
    if (headers['access-control-allow-origin'] !== undefined) headers['access-control-expose-headers'] = appendName(headers['access-control-expose-headers'], HEARTBEAT_HEADER)
  }
  raw.writeHead(code, headers)
  const encoder = encoding === undefined ? undefined : new StreamEncoder(encoding, compression as ResolvedCompression)
  // The header wins; the query parameter serves the first connection after a page load, which has no header.
  const query = settings.lastEventIdQuery === false ? undefined : (request.query as Record<string, unknown> | undefined)?.[settings.lastEventIdQuery]
  const stream = new EventStream(raw, lastEventIdOf(request.headers[LAST_EVENT_ID_HEADER]) ?? lastEventIdOf(query), {
    maxBufferedBytes: settings.maxBufferedBytes,
    log: reply.log,
    owner: settings.registry,
    sent: settings.registry.sent,
    encoder,
    serializers: routeEventSerializers(reply)
  })
  settings.registry.add(stream)
  if (streamOpen.hasSubscribers) streamOpen.publish({ stream, request })
  // The client left before the handler opened the stream (it awaited something first): its response will never
  // say 'close' again, so the stream ends now instead of staying open for nobody.
  if (raw.destroyed === true || raw.stream?.destroyed === true) {
    stream[kFinish]()
    return stream
  }
  // The first write carries the headers; without one, flush them so that the client's onopen fires now.
  if (settings.retry === undefined) raw.flushHeaders()
  else raw.write(encoder === undefined ? encodeRetry(settings.retry) : encoder.encode(encodeRetry(settings.retry)))
  return stream
}

/** The stream's headers merged over those already set on the reply (by hooks such as CORS, or by the handler). */
export function streamHeaders (reply: FastifyReply, raw: { hasHeader (name: string): boolean, removeHeader (name: string): void }): Headers {
  const http2 = reply.request.raw.httpVersionMajor >= 2
  const headers: Headers = reply.getHeaders()
  for (const name of http2 ? HTTP2_DROPPED_HEADERS : DROPPED_HEADERS) {
    if (headers[name] === undefined) continue
    delete headers[name]
    // writeHead() merges what was set on the raw response. Only a header that is there is removed: removing an
    // absent transfer-encoding would turn off chunked encoding.
    if (raw.hasHeader(name)) raw.removeHeader(name)
  }
  headers[CONTENT_TYPE_HEADER] = CONTENT_TYPE_VALUE
  headers[CACHE_CONTROL_HEADER] = CACHE_CONTROL_VALUE
  headers[ACCEL_BUFFERING_HEADER] = ACCEL_BUFFERING_VALUE
  if (!http2) headers[CONNECTION_HEADER] = CONNECTION_VALUE
  return headers
}

/**
 * A header listing names with `name` added, unless it is there or `*` is: Vary (after what CORS put there: Origin),
 * Access-Control-Expose-Headers.
 */
function appendName (list: number | string | string[] | undefined, name: string): string {
  const names = (Array.isArray(list) ? list.join(',') : list === undefined ? '' : String(list)).split(',').map(item => item.trim()).filter(item => item !== '')
  if (names.some(item => item === '*' || item.toLowerCase() === name.toLowerCase())) return names.join(', ')
  return [...names, name].join(', ')
}

function lastEventIdOf (value: unknown): unknown {
  return value === '' ? undefined : value
}
