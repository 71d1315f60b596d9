// A chat server in the shape the AI SDK's docs give for resumable streams, with the run store behind it, and a slow
// mock model from `ai/test`.
import { convertToModelMessages, streamText, type UIMessage, type UIMessageChunk } from 'ai'
import { MockLanguageModelV4 } from 'ai/test'
import type { FastifyInstance } from 'fastify'

/** The words the mock model answers with, one text delta each. */
export const WORDS = Array.from({ length: 30 }, (_, i) => `word${i} `)

export interface SlowModel {
  model: MockLanguageModelV4
  /** How many times the model was called, and how many of its streams were cancelled before the end. */
  calls: () => number
  cancelled: () => number
}

/** A model that streams WORDS one every `gapMs`, stopping when its stream is cancelled (the run was). */
export function slowModel (gapMs: number): SlowModel {
  let calls = 0
  let cancelled = 0
  const model = new MockLanguageModelV4({
    doStream: async () => {
      calls++
      let timer: NodeJS.Timeout | undefined
      const parts: unknown[] = [
        { type: 'stream-start', warnings: [] },
        { type: 'text-start', id: 't1' },
        ...WORDS.map(delta => ({ type: 'text-delta', id: 't1', delta })),
        { type: 'text-end', id: 't1' },
        {
          type: 'finish',
          finishReason: { unified: 'stop', raw: 'stop' },
          usage: { inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 30, text: 30, reasoning: 0 } }
        }
      ]
      const stream = new ReadableStream({
        pull: async controller => {
          await new Promise(resolve => { timer = setTimeout(resolve, gapMs) })
          const part = parts.shift()
          if (part === undefined) controller.close()
          else controller.enqueue(part)
        },
        cancel: () => {
          cancelled++
          clearTimeout(timer)
        }
      })
      return { stream: stream as never }
    }
  })
  return { model, calls: () => calls, cancelled: () => cancelled }
}

/** POST /api/chat starts (or attaches to) the chat's run and streams it; GET /api/chat/:id/stream resumes it. */
export function chatRoutes (app: FastifyInstance, model: MockLanguageModelV4): void {
  app.post<{ Body: { id: string, messages: UIMessage[] } }>('/api/chat', async (request, reply) => {
    const { id, messages } = request.body
    await app.eventRuns.stream(reply, id, async signal => streamText({
      model,
      messages: await convertToModelMessages(messages),
      abortSignal: signal
    }).toUIMessageStream(), { protocol: 'ai-sdk', replace: true })
  })
  app.get<{ Params: { id: string } }>('/api/chat/:id/stream', async (request, reply) => {
    await app.eventRuns.read(reply, request.params.id)
  })
  app.delete<{ Params: { id: string } }>('/api/chat/:id/stream', async (request) => {
    return { cancelled: await app.eventRuns.cancel(request.params.id) }
  })
}

export const question = (text: string): UIMessage => ({ id: 'u1', role: 'user', parts: [{ type: 'text', text }] })

/** The text of an assembled assistant message. */
export function textOf (message: UIMessage | undefined): string {
  return (message?.parts ?? []).map(part => part.type === 'text' ? part.text : '').join('')
}

/**
 * Reads chunks until `words` text deltas came; throws (with what came) if the stream ends first, rather than reading a
 * finished stream forever: a loop of reads that resolve at once never yields to timers, tap's timeout included.
 */
export async function readWords (reader: ReadableStreamDefaultReader<UIMessageChunk>, words: number): Promise<UIMessageChunk[]> {
  const seen: UIMessageChunk[] = []
  while (seen.filter(chunk => chunk.type === 'text-delta').length < words) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`the answer ended before ${words} words: ${JSON.stringify(seen)}`)
    seen.push(value)
  }
  return seen
}
