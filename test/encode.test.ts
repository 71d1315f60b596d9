import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { encodeComment, encodeMessage, encodeRetry } from '../lib/encode.js'
import { FST_SSE_INVALID_FIELD } from '../lib/errors.js'

const text = (frame: Buffer): string => frame.toString('utf8')

/** What a WHATWG-compliant client makes of the bytes. */
function parse (bytes: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: event => events.push(event) })
  parser.feed(bytes)
  return events
}

t.test('message fields are written in wire order whatever the order of the options', async t => {
  t.equal(text(encodeMessage('x', { retry: 5, event: 'e', id: '7' })), 'id: 7\nevent: e\nretry: 5\ndata: x\n\n')
  t.equal(text(encodeMessage('x')), 'data: x\n\n')
  t.equal(text(encodeMessage('x', {})), 'data: x\n\n')
})

t.test('id: strings, numbers, zero and the empty id that resets the client', async t => {
  t.equal(text(encodeMessage('x', { id: 'abc' })), 'id: abc\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { id: 42 })), 'id: 42\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { id: 0 })), 'id: 0\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { id: '' })), 'id: \ndata: x\n\n')
  t.equal(text(encodeMessage('x', { id: ' padded ' })), 'id:  padded \ndata: x\n\n')
})

t.test('event: written only when it is a non-empty string', async t => {
  t.equal(text(encodeMessage('x', { event: 'update' })), 'event: update\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { event: '' })), 'data: x\n\n')
})

t.test('retry: whole milliseconds, fraction dropped, negative clamped to 0, zero kept', async t => {
  t.equal(text(encodeMessage('x', { retry: 1500.9 })), 'retry: 1500\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { retry: 0 })), 'retry: 0\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { retry: -20 })), 'retry: 0\ndata: x\n\n')
  t.equal(text(encodeMessage('x', { retry: -0.5 })), 'retry: 0\ndata: x\n\n')
  t.equal(text(encodeRetry(3000.7)), 'retry: 3000\n\n')
})

t.test('data is split at LF, CRLF and lone CR alike, trailing breaks included', async t => {
  const cases: Array<[string, string]> = [
    ['', 'data: \n\n'],
    ['a\nb', 'data: a\ndata: b\n\n'],
    ['a\r\nb', 'data: a\ndata: b\n\n'],
    ['a\rb', 'data: a\ndata: b\n\n'],
    ['a\r\rb', 'data: a\ndata: \ndata: b\n\n'],
    ['a\n\rb', 'data: a\ndata: \ndata: b\n\n'],
    ['a\r\n\r\nb', 'data: a\ndata: \ndata: b\n\n'],
    ['hello\n', 'data: hello\ndata: \n\n'],
    ['hello\r', 'data: hello\ndata: \n\n'],
    ['\n', 'data: \ndata: \n\n'],
    ['\r\n', 'data: \ndata: \n\n'],
    ['one\rtwo\nthree\r\nfour', 'data: one\ndata: two\ndata: three\ndata: four\n\n']
  ]
  for (const [data, frame] of cases) {
    t.equal(text(encodeMessage(data)), frame, JSON.stringify(data))
    t.equal(text(encodeMessage(Buffer.from(data))), frame, `bytes ${JSON.stringify(data)}`)
  }
})

t.test('a compliant parser reads back exactly the data sent, CR and CRLF as LF', async t => {
  const samples = ['', ' leading space', '  two', ':colon first', 'a\nb', 'a\r\nb\rc', 'trailing\n', 'x\n\n', '\r\n\r\n',
    'data: nested', 'é 漢字 🎉 \u2028 \ufeff inside', 'id: 5']
  // Assertion names are indexes: U+2028 in a name would break the TAP line it is reported on.
  samples.forEach((data, i) => {
    const events = parse(text(encodeMessage(data, { id: 'i', event: 'e' })))
    t.same(events, [{ id: 'i', event: 'e', data: data.replace(/\r\n?/g, '\n') }], `sample ${i}`)
  })
})

t.test('string data is UTF-8, bytes are sent as given, no BOM', async t => {
  const utf8 = encodeMessage('é漢🎉')
  t.same([...utf8.subarray(0, 6)], [...Buffer.from('data: ')])
  t.equal(text(utf8), 'data: é漢🎉\n\n')
  const bytes = Uint8Array.from([0xff, 0x00, 0x0a, 0xe6, 0xbc, 0xa2])
  t.same([...encodeMessage(bytes)], [...Buffer.from('data: '), 0xff, 0x00, 0x0a, ...Buffer.from('data: '), 0xe6, 0xbc, 0xa2, 0x0a, 0x0a])
  t.equal(text(encodeMessage('\ufeffx')).startsWith('data: '), true, 'a BOM in data is data, never a prefix of the stream')
})

t.test('byte data with fields keeps the head before the data lines', async t => {
  t.equal(text(encodeMessage(new TextEncoder().encode('a\r\nb'), { id: 'é', event: 'e' })), 'id: é\nevent: e\ndata: a\ndata: b\n\n')
})

t.test('comments', async t => {
  t.equal(text(encodeComment('keep-alive')), ': keep-alive\n\n')
  t.equal(text(encodeComment()), ': \n\n')
  t.equal(text(encodeComment('')), ': \n\n')
})

t.test('forbidden fields throw FST_SSE_INVALID_FIELD', async t => {
  const bad: Array<[string, () => unknown]> = [
    ['LF in id', () => encodeMessage('x', { id: 'a\nb' })],
    ['CR in id', () => encodeMessage('x', { id: 'a\rb' })],
    ['NUL in id', () => encodeMessage('x', { id: 'a\0b' })],
    ['LF in event', () => encodeMessage('x', { event: 'a\n' })],
    ['CR in event', () => encodeMessage('x', { event: '\ra' })],
    ['LF in comment', () => encodeComment('a\nb')],
    ['CR in comment', () => encodeComment('a\rb')],
    ['NaN retry', () => encodeMessage('x', { retry: NaN })],
    ['infinite retry', () => encodeMessage('x', { retry: Infinity })],
    ['string retry', () => encodeMessage('x', { retry: '5' as unknown as number })],
    ['NaN id', () => encodeMessage('x', { id: NaN })],
    ['boolean id', () => encodeMessage('x', { id: true as unknown as string })],
    ['number event', () => encodeMessage('x', { event: 1 as unknown as string })],
    ['object data', () => encodeMessage({} as unknown as string)],
    ['number comment', () => encodeComment(1 as unknown as string)],
    ['NaN open retry', () => encodeRetry(NaN)]
  ]
  for (const [name, call] of bad) {
    const err = t.throws(call, { code: 'FST_SSE_INVALID_FIELD', statusCode: 500 }, name)
    t.type(err, TypeError, `${name} is a TypeError`)
  }
  t.throws(() => encodeMessage('x', { id: 'a\nb' }), FST_SSE_INVALID_FIELD)
  t.match(t.throws(() => encodeMessage('x', { event: 'a\nb' })), { message: /event must not contain CR or LF/ })
})
