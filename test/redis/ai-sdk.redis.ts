// The AI SDK's transport against two instances sharing Redis: the answer resumes on the instance that did not run it.
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import fastifyEventStream from '../../index.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { WORDS, chatRoutes, question, readWords, slowModel, textOf, type SlowModel } from '../runs/chat.js'
import { SHARED_REDIS, uniquePrefix } from './helpers.js'

async function chatInstance (t: Test, prefix: string, slow: SlowModel): Promise<{ app: FastifyInstance, api: string }> {
  const app = Fastify({ forceCloseConnections: true })
  await app.register(fastifyEventStream, { heartbeat: false, hub: { store: new RedisStore({ connection: SHARED_REDIS, prefix }) } })
  chatRoutes(app, slow.model)
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, api: `http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/chat` }
}

async function assemble (stream: ReadableStream<UIMessageChunk>): Promise<UIMessage | undefined> {
  let last: UIMessage | undefined
  for await (const message of readUIMessageStream({ stream })) last = message
  return last
}

t.test('sent to A, dropped after five words, resumed on B with reconnectToStream(): the unbroken answer', async t => {
  const prefix = uniquePrefix(t)
  const slowA = slowModel(10)
  const slowB = slowModel(10)
  const a = await chatInstance(t, prefix, slowA)
  const b = await chatInstance(t, prefix, slowB)
  const controller = new AbortController()
  const first = await new DefaultChatTransport({ api: a.api }).sendMessages({
    chatId: 'chat-7', messages: [question('hello')], trigger: 'submit-message', messageId: undefined, abortSignal: controller.signal
  })
  const reader = first.getReader()
  await readWords(reader, 5)
  controller.abort()
  await reader.cancel().catch(() => {})
  const onB = new DefaultChatTransport({ api: b.api })
  const resumed = await onB.reconnectToStream({ chatId: 'chat-7' })
  const message = await assemble(resumed as ReadableStream<UIMessageChunk>)
  t.equal(textOf(message), WORDS.join(''), 'every word, once, in order')
  t.equal(slowA.calls() + slowB.calls(), 1, 'the model ran once, on A')
  const unbroken = await assemble(await onB.sendMessages({
    chatId: 'chat-8', messages: [question('hello')], trigger: 'submit-message', messageId: undefined, abortSignal: undefined
  }))
  t.same(message?.parts, unbroken?.parts, 'the same parts as an answer never dropped')
  t.equal(await onB.reconnectToStream({ chatId: 'chat-unknown' }), null)
})
