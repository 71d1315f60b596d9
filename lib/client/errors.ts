/** Why a client stopped, or why its last attempt failed. */
export type ClientErrorCode =
  /** An option that cannot work: thrown by connect(), or a URL function that returned no URL (the client stops). */
  | 'FST_SSE_CLIENT_INVALID_OPTION'
  /** The server answered with an error status: 408, 429 and 5xx are retried, any other stops the client. */
  | 'FST_SSE_CLIENT_HTTP_STATUS'
  /** A success status with a body that is not text/event-stream: the client stops (a login page, a proxy's answer). */
  | 'FST_SSE_CLIENT_CONTENT_TYPE'
  /** No response, or the connection broke (offline, server gone, headers function failed): retried. */
  | 'FST_SSE_CLIENT_NETWORK'
  /** Nothing arrived for idleTimeout on an open stream (a connection dead without the OS noticing): reconnected. */
  | 'FST_SSE_CLIENT_IDLE'
  /** A JSON event whose data did not parse: it is skipped, the stream goes on. */
  | 'FST_SSE_CLIENT_INVALID_JSON'

/** The one error class of the client: `code` says what went wrong, `retryable` whether the client tries again. */
export class EventClientError extends Error {
  readonly code: ClientErrorCode
  /** The response's status, for FST_SSE_CLIENT_HTTP_STATUS and FST_SSE_CLIENT_CONTENT_TYPE. */
  readonly status: number | undefined
  readonly retryable: boolean
  /** How long the server asked to wait (Retry-After on 429 or 503), in ms. */
  readonly retryAfter: number | undefined

  constructor (code: ClientErrorCode, message: string, options: { status?: number, retryable?: boolean, retryAfter?: number, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'EventClientError'
    this.code = code
    this.status = options.status
    this.retryable = options.retryable ?? false
    this.retryAfter = options.retryAfter
  }
}

/** The error for an answer that is not an event stream: retryable for 408, 429 and 5xx, with Retry-After on 429 and 503. */
export function statusError (response: Response): EventClientError {
  const { status } = response
  const retryAfter = status === 429 || status === 503 ? parseRetryAfter(response.headers.get('retry-after')) : undefined
  return new EventClientError('FST_SSE_CLIENT_HTTP_STATUS', `The event stream answered ${status}`, {
    status, retryAfter, retryable: status === 408 || status === 429 || status >= 500
  })
}

/** Retry-After as ms: delay-seconds or an HTTP date (RFC 9110 10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter (value: string | null): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}
