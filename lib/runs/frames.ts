import { encodeMessage, jsonData, type EncodedMessage } from '../encode.js'
import { FST_SSE_INVALID_FIELD } from '../errors.js'
import type { JsonItem, MessageItem } from '../source.js'
import type { RunEnd, RunProtocol } from './store.js'

/** The event type of a plain run's final event; its data is `{"reason":"done"}` (or how else the run ended). */
export const RUN_END_EVENT = 'end'
/** The response header with which the AI SDK's transport recognises its UI message stream protocol. */
export const AI_SDK_HEADER = 'x-vercel-ai-ui-message-stream'
export const AI_SDK_HEADER_VALUE = 'v1'

/** A run's ids on the wire: `<run id>.<index>`, so that an id of an earlier run of the key is never placed in this one. */
export function runEventId (runId: string, index: number): string {
  return `${runId}.${index}`
}

/** The index after which a reader with this last event id resumes the run: 0 (from the start) for any other id. */
export function resumeIndex (lastEventId: unknown, runId: string, count: number): number {
  if (typeof lastEventId !== 'string' || lastEventId.length <= runId.length + 1 || !lastEventId.startsWith(runId) ||
    lastEventId.charCodeAt(runId.length) !== 0x2e) return 0
  const digits = lastEventId.slice(runId.length + 1)
  if (!/^[1-9][0-9]{0,15}$/.test(digits)) return 0
  const index = Number(digits)
  return index <= count ? index : 0
}

/**
 * One item of a run's source as a frame with the run's id. Plain runs take what consume() takes (data, a message
 * object, a typed JSON event); AI SDK runs take its UI message chunks (objects, sent as JSON) or text.
 */
export function itemFrame (item: unknown, protocol: RunProtocol, id: string): EncodedMessage {
  if (typeof item === 'string' || item instanceof Uint8Array) return encodeMessage(item, { id })
  if (typeof item === 'object' && item !== null) {
    if (protocol === 'ai-sdk') return encodeMessage(jsonData(item), { id })
    if ('json' in item) {
      const { json, event, retry } = item as JsonItem<Record<string, unknown>>
      return encodeMessage(jsonData(json), { event, retry, id })
    }
    if ('data' in item) {
      const { data, event, retry } = item as MessageItem
      return encodeMessage(data, { event, retry, id })
    }
  }
  throw new FST_SSE_INVALID_FIELD('a run item must be a string, a Uint8Array, or an object with data or json (any object in an ai-sdk run)')
}

const AI_SDK_ERRORS: Record<Exclude<RunEnd, 'done' | 'cancelled'>, string> = {
  failed: 'The answer failed',
  interrupted: 'The answer was interrupted: the server running it stopped',
  overflow: 'The answer was cut off: it reached the size limit of a run'
}

/**
 * A run's final frame, around its id line: a plain run's `end` event, or for the AI SDK the chunk that says why
 * (an abort, an error) before `data: [DONE]`. Kept in two parts so that a store can write an interrupted run's
 * final frame itself, with the id it assigns.
 */
export function finalParts (protocol: RunProtocol, end: RunEnd): { before: string, after: string } {
  if (protocol === 'events') return { before: '', after: `event: ${RUN_END_EVENT}\ndata: ${JSON.stringify({ reason: end })}\n\n` }
  const done = 'data: [DONE]\n\n'
  if (end === 'done') return { before: '', after: done }
  const chunk = end === 'cancelled' ? { type: 'abort' } : { type: 'error', errorText: AI_SDK_ERRORS[end] }
  return { before: `data: ${JSON.stringify(chunk)}\n\n`, after: done }
}

export function finalFrame (protocol: RunProtocol, end: RunEnd, id: string): EncodedMessage {
  const { before, after } = finalParts(protocol, end)
  return Buffer.from(`${before}id: ${id}\n${after}`) as EncodedMessage
}
