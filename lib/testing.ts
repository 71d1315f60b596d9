import type { FastifyInstance, InjectOptions } from 'fastify'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import { createGunzip, createInflate } from 'node:zlib'
import { EventStreamParser, type ParsedEvent } from './parse.js'

/** An SSE response read through `inject`: status, headers, and the events as an async iterable. */
export interface InjectedEventStream extends AsyncIterable<ParsedEvent> {
  statusCode: number
  headers: Record<string, string | string[] | number | undefined>
  /** Leaves the stream, as a client that disconnects: resolves once the route's stream ended and its signal aborted. */
  close: () => Promise<void>
}

/**
 * Requests an SSE route without a socket and parses what it sends by the WHATWG rules, for tests:
 * `for await (const event of await injectEventStream(app, '/events')) …`. Leaving the loop closes the request.
 */
export async function injectEventStream (app: FastifyInstance, options: InjectOptions | string): Promise<InjectedEventStream> {
  const request: InjectOptions = typeof options === 'string' ? { url: options } : options
  const response = await app.inject({ method: 'GET', ...request, payloadAsStream: true })
  const raw = response.stream()
  // A compressed stream (the request accepted a coding the route offers) is read decoded, as a browser would.
  const encoding = response.headers['content-encoding']
  const body: Readable = encoding === 'gzip' ? raw.pipe(createGunzip()) : encoding === 'deflate' ? raw.pipe(createInflate()) : raw
  const res = response.raw.res
  const close = async (): Promise<void> => {
    raw.destroy()
    body.destroy()
    if (res.destroyed || res.writableFinished) return
    const closed = once(res, 'close')
    res.destroy()
    await closed
  }
  return {
    statusCode: response.statusCode,
    headers: response.headers,
    close,
    async * [Symbol.asyncIterator] () {
      const events: ParsedEvent[] = []
      const parser = new EventStreamParser(event => events.push(event))
      const decoder = new TextDecoder()
      try {
        for await (const chunk of body) {
          parser.feed(decoder.decode(chunk, { stream: true }))
          yield * events.splice(0)
        }
      } finally {
        await close()
      }
    }
  }
}
