import type { EventStream } from '../../index.js'

/** What a client's EventSource reports for one event. */
export interface Received {
  type: string
  data: string
  lastEventId: string
}

/** An expected event, with the id its own frame carried (when it carried one). */
export interface Expected extends Received {
  ownId?: string
}

export interface Case {
  /** Event types the client listens for besides `message`. */
  types: string[]
  send: (stream: EventStream) => void
  expected: Expected[]
}

const message = (data: string, lastEventId = '', ownId?: string): Expected =>
  ownId === undefined ? { type: 'message', data, lastEventId } : { type: 'message', data, lastEventId, ownId }

/**
 * What a client should report. The spec keeps the last event id across events; the `eventsource` package (4.x)
 * reports only the id of the event's own frame (it still resumes with the right Last-Event-ID), so for it the
 * expectation is that id.
 */
export function expectedBy (client: string, expected: Expected[]): Received[] {
  return expected.map(({ ownId, ...event }) =>
    client === 'eventsource' ? { ...event, lastEventId: ownId ?? '' } : event)
}

/** Every case is sent by the server as written, then read by each real client; what it reports must match. */
export const cases: Record<string, Case> = {
  seed: {
    types: ['greet'],
    send: stream => {
      stream.message('first', { id: '1', event: 'greet' })
      stream.comment('keep-alive')
      stream.message('multi\nline')
    },
    expected: [{ type: 'greet', data: 'first', lastEventId: '1', ownId: '1' }, message('multi\nline', '1')]
  },
  lineBreaks: {
    types: [],
    send: stream => {
      for (const data of ['a\nb', 'a\r\nb', 'a\rb', 'a\r\n\rb\nc', 'one\n\n\ntwo']) stream.message(data)
    },
    expected: [message('a\nb'), message('a\nb'), message('a\nb'), message('a\n\nb\nc'), message('one\n\n\ntwo')]
  },
  emptyData: {
    types: [],
    send: stream => {
      stream.message('')
      stream.message(new Uint8Array(0))
    },
    expected: [message(''), message('')]
  },
  spacesAndColons: {
    types: [],
    send: stream => {
      for (const data of [' leading', '   three', ':colon first', 'data: inside', 'a: b', ' ', ':']) stream.message(data)
    },
    expected: [' leading', '   three', ':colon first', 'data: inside', 'a: b', ' ', ':'].map(data => message(data))
  },
  trailingLineBreaks: {
    types: [],
    send: stream => {
      for (const data of ['end\n', '\n', 'crlf\r\n', 'cr\r', '\n\n']) stream.message(data)
    },
    expected: ['end\n', '\n', 'crlf\n', 'cr\n', '\n\n'].map(data => message(data))
  },
  nonAscii: {
    types: [],
    send: stream => {
      for (const data of ['é à ü ß', '漢字かな한글', '🎉👍🏽🧑‍💻', 'line\u2028separator', 'zero\ufeffwidth', '\ufeffat start']) {
        stream.message(data)
      }
      stream.message(new TextEncoder().encode('bytés\n漢'))
    },
    expected: ['é à ü ß', '漢字かな한글', '🎉👍🏽🧑‍💻', 'line\u2028separator', 'zero\ufeffwidth', '\ufeffat start', 'bytés\n漢']
      .map(data => message(data))
  },
  ids: {
    types: [],
    send: stream => {
      stream.message('a', { id: 'x1' })
      stream.message('b')
      stream.message('c', { id: 0 })
      stream.message('d', { id: ' spaced é' })
      stream.message('e', { id: '' })
      stream.message('f')
    },
    expected: [message('a', 'x1', 'x1'), message('b', 'x1'), message('c', '0', '0'), message('d', ' spaced é', ' spaced é'),
      message('e', '', ''), message('f', '')]
  },
  eventTypes: {
    types: ['update', 'ünïcode'],
    send: stream => {
      stream.message('1', { event: 'update' })
      stream.message('2', { event: '' })
      stream.message('3', { event: 'message' })
      stream.message('4', { event: 'ünïcode' })
      stream.comment('ignored')
      stream.comment()
      stream.message('5', { event: 'ignored-type' })
      stream.message('6')
    },
    expected: [{ type: 'update', data: '1', lastEventId: '' }, message('2'), message('3'),
      { type: 'ünïcode', data: '4', lastEventId: '' }, message('6')]
  }
}

/**
 * Opens an EventSource, records every event until the server's `done` event, and closes it. Self-contained (no
 * imports, no closures) because the browser suite sends its source text into the page.
 */
export function collectEvents (EventSourceImpl: any, url: string, types: string[], timeoutMs: number): Promise<Received[]> {
  return new Promise((resolve, reject) => {
    const source = new EventSourceImpl(url)
    const received: Received[] = []
    const timer = setTimeout(() => {
      source.close()
      reject(new Error('timed out; received ' + JSON.stringify(received)))
    }, timeoutMs)
    const record = (event: MessageEvent): void => {
      received.push({ type: event.type, data: event.data, lastEventId: event.lastEventId })
    }
    source.addEventListener('message', record)
    for (const type of types) source.addEventListener(type, record)
    source.addEventListener('done', () => {
      clearTimeout(timer)
      source.close()
      resolve(received)
    })
  })
}
