// The demo's assistant: a fake model streams an answer word by word as a run (app.eventRuns), so that the answer
// outlives the page: reload mid-answer and it goes on from the last word the page had; press Stop and it is
// cancelled wherever it runs; with two instances (REDIS_URL) the page may read it from the one that did not start it.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'

/** The words of the answer to a question: the question echoed, then a paragraph about runs. */
export function answerTo (question: string): string[] {
  const text = `You asked: "${question}". Here is the answer, streamed one word at a time. It is a run: the server ` +
    'keeps every word it sends, so reloading this page, switching networks or landing on another instance does not ' +
    'lose it or start it again. The page resumes from the last word it has, the model behind it was asked once, and ' +
    'the Stop button cancels it on whichever server is writing it.'
  return text.split(' ').map((word, i) => (i === 0 ? word : ` ${word}`))
}

/** A fake model: the answer's words, one every `wordMs`, until the run's signal aborts. */
async function * fakeModel (question: string, wordMs: number, signal: AbortSignal): AsyncGenerator<string> {
  for (const word of answerTo(question)) {
    await sleep(wordMs, undefined, { signal }).catch(() => {})
    if (signal.aborted) return
    yield word
  }
}

export function assistantRoutes (app: FastifyInstance, wordMs: number): void {
  app.post<{ Body: { question: string } }>('/assistant', {
    schema: { body: { type: 'object', required: ['question'], properties: { question: { type: 'string', minLength: 1, maxLength: 200 } } } }
  }, async (request, reply) => {
    const key = `answer-${randomUUID()}`
    await app.eventRuns.start(key, signal => fakeModel(request.body.question, wordMs, signal))
    reply.code(201)
    return { key }
  })
  // The answer so far, then live, then `event: end`; resumes after ?lastEventId= or Last-Event-ID; 204 when gone.
  app.get<{ Params: { key: string } }>('/assistant/:key', async (request, reply) => {
    await app.eventRuns.read(reply, request.params.key)
  })
  app.delete<{ Params: { key: string } }>('/assistant/:key', async (request) => {
    return { cancelled: await app.eventRuns.cancel(request.params.key) }
  })
}
