import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'

// The compiled package, as a user imports it: `npm test` builds dist/ first. A child process keeps the compiled
// copy out of this run's coverage, which is measured on the TypeScript sources.
t.test('the compiled package imports cleanly by name', async t => {
  const script = `
    import fastifyEventStream, { EventStream, FST_SSE_INVALID_FIELD, LAST_EVENT_ID_HEADER, encodeMessage } from 'fastify-event-stream'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(fastifyEventStream)
    app.get('/', (request, reply) => { const stream = reply.sse(); stream.message('ok', { id: 1 }); stream.close() })
    const response = await app.inject('/')
    console.log(JSON.stringify({
      name: fastifyEventStream[Symbol.for('fastify.display-name')],
      body: response.body,
      stream: typeof EventStream,
      error: new FST_SSE_INVALID_FIELD('x').code,
      header: LAST_EVENT_ID_HEADER,
      frame: encodeMessage('a').toString()
    }))
    await app.close()
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
  t.same(JSON.parse(stdout), {
    name: 'fastify-event-stream',
    body: 'id: 1\ndata: ok\n\n',
    stream: 'function',
    error: 'FST_SSE_INVALID_FIELD',
    header: 'last-event-id',
    frame: 'data: a\n\n'
  })
})
