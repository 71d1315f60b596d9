// The plugin in a real-world stack: @fastify/cors, @fastify/compress (global, threshold 0) and @fastify/helmet,
// registered before and after it. Events must still arrive one by one (never held back by a compressor), with the
// CORS and helmet headers on the stream, and a preflight that allows Last-Event-ID.
import cors from '@fastify/cors'
import compress from '@fastify/compress'
import helmet from '@fastify/helmet'
import Fastify, { type FastifyInstance } from 'fastify'
import http from 'node:http'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import fastifyEventStream from '../index.js'
import { get, listen } from './helpers.js'

const ORIGIN = 'http://app.example'
const GAP_MS = 150

async function stack (t: Test, ours: 'first' | 'last'): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  const plugin = async (): Promise<void> => { await app.register(fastifyEventStream, { heartbeat: false }) }
  if (ours === 'first') await plugin()
  await app.register(cors, { origin: ORIGIN })
  await app.register(compress, { global: true, threshold: 0 })
  await app.register(helmet)
  if (ours === 'last') await plugin()
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    let n = 0
    const timer = setInterval(() => {
      n++
      stream.message(`event ${n}`, { id: n })
      if (n === 3) { clearInterval(timer); stream.close() }
    }, GAP_MS)
    stream.signal.addEventListener('abort', () => clearInterval(timer))
  })
  app.get('/json', async () => ({ hello: 'x'.repeat(2000) }))
  return app
}

for (const ours of ['first', 'last'] as const) {
  t.test(`registered ${ours}: events arrive one by one through Accept-Encoding gzip, br, with CORS and helmet headers`, async t => {
    const app = await stack(t, ours)
    const url = await listen(app)
    const json = await get(`${url}/json`, { 'accept-encoding': 'gzip, br' })
    t.match(json.headers['content-encoding'], /^(gzip|br)$/, 'the compressor is active on ordinary routes')
    json.resume()

    const response = await get(`${url}/events`, { 'accept-encoding': 'gzip, br', origin: ORIGIN })
    t.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8')
    t.equal(response.headers['content-encoding'], undefined, 'the stream is not compressed')
    t.equal(response.headers['access-control-allow-origin'], ORIGIN)
    t.equal(response.headers['x-content-type-options'], 'nosniff')
    t.ok(response.headers['content-security-policy'], 'helmet\'s CSP header is on the stream')
    const arrivals: Array<{ at: number, text: string }> = []
    response.on('data', (chunk: Buffer) => arrivals.push({ at: performance.now(), text: chunk.toString() }))
    await once(response, 'end')
    t.equal(arrivals.map(arrival => arrival.text).join(''), 'id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n')
    t.equal(arrivals.length, 3, 'each event arrived in its own chunk')
    const gaps = arrivals.slice(1).map((arrival, i) => arrival.at - arrivals[i].at)
    t.ok(gaps.every(gap => gap >= GAP_MS * 0.5), `each event arrived when it was sent (gaps ${gaps.map(Math.round).join(', ')} ms)`)
  })

  t.test(`registered ${ours}: the CORS preflight allows Last-Event-ID`, async t => {
    const app = await stack(t, ours)
    const url = new URL(`${await listen(app)}/events`)
    const request = http.request(url, {
      method: 'OPTIONS',
      agent: false,
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'last-event-id' }
    })
    request.end()
    const [response] = await once(request, 'response') as [http.IncomingMessage]
    response.resume()
    t.equal(response.statusCode, 204)
    t.equal(response.headers['access-control-allow-origin'], ORIGIN)
    t.match(String(response.headers['access-control-allow-headers']).toLowerCase(), /(^|,\s*)last-event-id(\s*,|$)/)
  })
}
