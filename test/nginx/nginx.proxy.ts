// Event streams behind a real nginx (Debian's), started by each test on a free port with the location block the
// README gives (examples/nginx/event-streams.conf), and stopped again. Run with `npm run test:nginx`.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { connect } from '../../lib/client/index.js'
import type { EventStream, FastifyEventStreamOptions } from '../../index.js'
import { build, freePort, get, listen, readAll, readUntil, until } from '../helpers.js'

const LOCATION = await readFile(new URL('../../examples/nginx/event-streams.conf', import.meta.url), 'utf8')
const NGINX = '/usr/sbin/nginx'

/** Starts nginx in front of the app's port with the README's location block; `edit` changes the block. Its base URL. */
async function nginx (t: Test, appPort: number, edit: (location: string) => string = location => location): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fastify-event-stream-nginx-'))
  const port = await freePort()
  const config = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream fastify_app { server 127.0.0.1:${appPort}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    ${edit(LOCATION)}
  }
}
`
  await writeFile(join(dir, 'nginx.conf'), config)
  const child = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let errors = ''
  child.stderr.on('data', (chunk: Buffer) => { errors += chunk.toString() })
  t.teardown(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  })
  const deadline = Date.now() + 10_000
  while (!await accepts(port)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`nginx did not start: ${errors}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return `http://127.0.0.1:${port}`
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** An app whose /events route keeps its streams (subscribed to the hub topic `news` with ?hub). */
async function eventsApp (t: Test, options: FastifyEventStreamOptions = {}): Promise<{ app: FastifyInstance, port: number, streams: EventStream[] }> {
  const app = await build(t, options, { forceCloseConnections: true })
  const streams: EventStream[] = []
  app.get('/events', (request, reply) => {
    const stream = reply.sse()
    if (stream.closed) return
    streams.push(stream)
    if ((request.query as { hub?: string }).hub !== undefined) app.eventHub.subscribe(stream, 'news').catch(() => {})
  })
  const url = await listen(app)
  return { app, port: Number(new URL(url).port), streams }
}

t.test('through nginx each event arrives as it is sent, not when a buffer fills', async t => {
  const { port, streams } = await eventsApp(t, { heartbeat: false })
  const base = await nginx(t, port)
  const response = await get(`${base}/events`)
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/event-stream/)
  t.equal(response.headers['content-length'], undefined)
  await until(() => streams.length === 1, 'the stream to open')
  for (let n = 1; n <= 3; n++) {
    await streams[0].message(`event ${n}`)
    t.match(await readUntil(response, `data: event ${n}\n\n`), `data: event ${n}`, `event ${n} read before the next was sent`)
  }
  response.destroy()
})

t.test('a client that leaves nginx ends its stream on the server', async t => {
  const { app, port, streams } = await eventsApp(t, { heartbeat: false })
  const base = await nginx(t, port)
  const response = await get(`${base}/events`)
  await until(() => streams.length === 1, 'the stream to open')
  response.destroy()
  await once(streams[0].signal, 'abort')
  t.equal(app.openEventStreams, 0)
})

t.test('our client through nginx: a stream the server ends is resumed with Last-Event-ID, no gap, no duplicate', async t => {
  const { app, port, streams } = await eventsApp(t, { heartbeat: false })
  const base = await nginx(t, port)
  const client = connect(`${base}/events?hub`, { retry: 50 })
  t.teardown(client.close)
  const got: string[] = []
  client.on('message', data => got.push(data))
  await until(() => app.eventHub.stats().subscribers.news === 1, 'the subscription')
  for (let i = 1; i <= 3; i++) await app.eventHub.publish('news', `n${i}`)
  await until(() => got.length === 3, 'three events')
  await streams[0].close()
  for (let i = 4; i <= 6; i++) await app.eventHub.publish('news', `n${i}`)
  await until(() => got.length === 6, 'the events published while it was away')
  t.same(got, ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'])
  t.equal(streams.length, 2, 'it came back once')
  t.match(streams[1].lastEventId, /^\d+$/, 'with the Last-Event-ID nginx passed through')
})

t.test('the heartbeat keeps an idle stream open past proxy_read_timeout; without it nginx cuts the stream off', async t => {
  const shortTimeout = (location: string): string => location.replace('proxy_read_timeout 1h;', 'proxy_read_timeout 1s;')
  const beating = await eventsApp(t, { heartbeat: 300 })
  const kept = await get(`${await nginx(t, beating.port, shortTimeout)}/events`)
  kept.on('error', err => { t.fail(`the beating stream failed: ${err.message}`) })
  const silent = await eventsApp(t, { heartbeat: false })
  const cut = await get(`${await nginx(t, silent.port, shortTimeout)}/events`)
  const started = Date.now()
  // nginx drops the connection in the middle of the chunked body: the response closes, incomplete.
  cut.on('error', () => {})
  await new Promise(resolve => cut.resume().on('close', resolve))
  const cutAfter = Date.now() - started
  t.equal(cut.complete, false, 'cut off, not ended')
  t.ok(cutAfter >= 900 && cutAfter < 5000, `nginx ended the silent stream after ${cutAfter} ms`)
  await new Promise(resolve => setTimeout(resolve, 1500))
  await beating.streams[0].message('still open')
  t.match(await readUntil(kept, 'still open'), 'data: still open', `the beating stream is open after ${Date.now() - started} ms`)
  kept.destroy()
})

t.test('a refusal passes through nginx: 503 with Retry-After; a shutdown: its retry hint, then the end', async t => {
  const { app, port } = await eventsApp(t, { reconnectWindow: [2000, 2000], admission: { maxStreams: 1 } })
  const base = await nginx(t, port)
  const first = await get(`${base}/events`)
  await until(() => app.openEventStreams === 1, 'the first stream')
  const refused = await get(`${base}/events`)
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '2')
  t.equal(JSON.parse(await readAll(refused)).code, 'FST_SSE_REFUSED')
  const body = readAll(first as http.IncomingMessage)
  await app.close()
  t.match(await body, /retry: 2000\n\n$/, 'the reconnect hint reached the client, then the end')
})
