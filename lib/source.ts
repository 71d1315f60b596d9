import { jsonData, messageFrame, type MessageData, type MessageOptions } from './encode.js'
import { FST_SSE_INVALID_FIELD, FST_SSE_INVALID_SOURCE } from './errors.js'

/** An event given with its data. */
export interface MessageItem extends MessageOptions {
  data: MessageData
}

/** A typed JSON event: `json` is sent as `JSON.stringify(json)` under the event name. */
export type JsonItem<Events> = {
  [E in keyof Events & string]: { event: E, json: Events[E], id?: string | number, retry?: number }
}[keyof Events & string]

/** What a source may yield: data alone, a message object, or a typed JSON event. */
export type SourceItem<Events = Record<string, unknown>> = MessageData | MessageItem | JsonItem<Events>

/** An async iterable (an async generator, a Node Readable) or an iterable of items; `& object` keeps strings out. */
export type Source<Events = Record<string, unknown>> = AsyncIterable<SourceItem<Events>> | (Iterable<SourceItem<Events>> & object)

interface Destroyable {
  destroy: () => unknown
}

/** Encodes one item as a frame; throws FST_SSE_INVALID_FIELD for an item of no known shape or an invalid field. */
export function encodeItem (item: unknown): string | Buffer {
  if (typeof item === 'string' || item instanceof Uint8Array) return messageFrame(item)
  if (typeof item === 'object' && item !== null) {
    if ('json' in item) {
      const { json, event, id, retry } = item as JsonItem<Record<string, unknown>>
      return messageFrame(jsonData(json), { event, id, retry })
    }
    if ('data' in item) return messageFrame((item as MessageItem).data, item as MessageItem)
  }
  throw new FST_SSE_INVALID_FIELD('a source item must be a string, a Uint8Array, or an object with data or json')
}

/** The iterator of a source; throws FST_SSE_INVALID_SOURCE for anything that is not an iterable of items. */
export function iterate (source: unknown): AsyncIterator<unknown> | Iterator<unknown> {
  // A string or bytes would be iterated character by character: surely not what was meant.
  if (typeof source === 'object' && source !== null && !(source instanceof Uint8Array)) {
    const asyncIterator = (source as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator]
    if (typeof asyncIterator === 'function') return asyncIterator.call(source)
    const iterator = (source as Partial<Iterable<unknown>>)[Symbol.iterator]
    if (typeof iterator === 'function') return iterator.call(source)
  }
  throw new FST_SSE_INVALID_SOURCE()
}

/** Stops a source that did not run to its end, so that its cleanup (`finally`, `_destroy`) runs. */
export function stopSource (source: unknown, iterator: AsyncIterator<unknown> | Iterator<unknown>, onError: (err: unknown) => void): void {
  if (typeof (source as Destroyable).destroy === 'function') {
    (source as Destroyable).destroy()
    return
  }
  try {
    // Not awaited: a generator suspended in a slow await finishes it first, and consume() does not wait for that.
    const result = iterator.return?.()
    if (result instanceof Promise) result.catch(onError)
  } catch (err) {
    onError(err)
  }
}
