// The AI SDK itself as the client: its DefaultChatTransport sends, drops and resumes; readUIMessageStream assembles.
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai'
import t from 'tap'
import { AI_SDK_HEADER } from '../../index.js'
import { build, listen, until } from '../helpers.js'
import { WORDS, chatRoutes, question, readWords, slowModel, textOf } from './chat.js'

/** Every chunk of a stream (the DOM's ReadableStream type has no async iterator). */
async function chunksOf (stream: ReadableStream<UIMessageChunk>): Promise<UIMessageChunk[]> {
  const reader = stream.getReader()
  const chunks: UIMessageChunk[] = []
  for (let read = await reader.read(); read.done !== true; read = await reader.read()) chunks.push(read.value)
  return chunks
}

async function assemble (stream: ReadableStream<UIMessageChunk>): Promise<UIMessage | undefined> {
  let last: UIMessage | undefined
  for await (const message of readUIMessageStream({ stream })) last = message
  return last
}

t.test('an answer sent, dropped mid-way and resumed with reconnectToStream() is the unbroken answer', async t => {
  const app = await build(t, { heartbeat: false })
  const slow = slowModel(5)
  chatRoutes(app, slow.model)
  const url = await listen(app)
  const transport = new DefaultChatTransport({ api: `${url}/api/chat` })
  const unbroken = await assemble(await transport.sendMessages({
    chatId: 'c-whole', messages: [question('hi')], trigger: 'submit-message', messageId: undefined, abortSignal: undefined
  }))
  t.equal(textOf(unbroken), WORDS.join(''))

  const controller = new AbortController()
  const first = await transport.sendMessages({
    chatId: 'c-drop', messages: [question('hi')], trigger: 'submit-message', messageId: undefined, abortSignal: controller.signal
  })
  const reader = first.getReader()
  await readWords(reader, 5)
  controller.abort()
  await reader.cancel().catch(() => {})
  const resumed = await transport.reconnectToStream({ chatId: 'c-drop' })
  t.ok(resumed, 'a running answer resumes')
  const message = await assemble(resumed as ReadableStream<UIMessageChunk>)
  t.equal(textOf(message), WORDS.join(''), 'replayed from its start and followed to the end')
  t.same(message?.parts.map(part => part.type), unbroken?.parts.map(part => part.type))
  t.equal(slow.calls(), 2, 'the model ran once per answer, not again for the resume')
  const after = await transport.reconnectToStream({ chatId: 'c-drop' })
  t.equal(textOf(await assemble(after as ReadableStream<UIMessageChunk>)), WORDS.join(''), 'a finished answer is still read within the TTL')
  t.equal(await transport.reconnectToStream({ chatId: 'never-asked' }), null, 'no answer: 204, which the transport reads as nothing to resume')
})

t.test('the header the transport expects, and a stop button that cancels the model call', async t => {
  const app = await build(t, { heartbeat: false })
  const slow = slowModel(20)
  chatRoutes(app, slow.model)
  const url = await listen(app)
  const response = await fetch(`${url}/api/chat`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'c-stop', messages: [question('hi')] })
  })
  t.equal(response.headers.get(AI_SDK_HEADER), 'v1')
  const chunks: UIMessageChunk[] = []
  const reading = (async () => {
    const transport = new DefaultChatTransport({ api: `${url}/api/chat` })
    const reader = (await transport.reconnectToStream({ chatId: 'c-stop' }) as ReadableStream<UIMessageChunk>).getReader()
    for (let read = await reader.read(); read.done !== true; read = await reader.read()) chunks.push(read.value)
  })()
  await until(() => chunks.some(chunk => chunk.type === 'text-delta'), 'the first words')
  t.same(await (await fetch(`${url}/api/chat/c-stop/stream`, { method: 'DELETE' })).json(), { cancelled: true })
  await reading
  await response.body?.cancel()
  t.equal(chunks.at(-1)?.type, 'abort', 'the stream ends with the abort chunk')
  await until(() => slow.cancelled() === 1, 'the model stream cancelled')
  t.ok(chunks.filter(chunk => chunk.type === 'text-delta').length < WORDS.length)
})

t.test('a model that fails: the UI stream carries the error; a run that fails outright ends with an error chunk', async t => {
  const app = await build(t, { heartbeat: false, runs: { maxBytes: 400 } })
  const slow = slowModel(1)
  chatRoutes(app, slow.model)
  const url = await listen(app)
  const transport = new DefaultChatTransport({ api: `${url}/api/chat` })
  const chunks = await chunksOf(await transport.sendMessages({
    chatId: 'c-big', messages: [question('hi')], trigger: 'submit-message', messageId: undefined, abortSignal: undefined
  }))
  const last = chunks.at(-1)
  t.equal(last?.type, 'error')
  t.match(last, { errorText: /size limit/ }, 'a run past its byte cap says so')
  const failed = await app.eventRuns.start('c-fail', () => { throw new Error('no model') }, { protocol: 'ai-sdk' })
  t.equal(await failed.done, 'failed')
  const failedChunks = await chunksOf(await transport.reconnectToStream({ chatId: 'c-fail' }) as ReadableStream<UIMessageChunk>)
  t.same(failedChunks, [{ type: 'error', errorText: 'The answer failed' }])
})
