import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { deepStrictEqual } from 'node:assert'
import fc from 'fast-check'
import t from 'tap'
import { encodeMessage, type MessageOptions } from '../index.js'
import { build } from './helpers.js'

// Property tests: whatever the data, id and event, a WHATWG-compliant parser that receives the bytes in arbitrary
// chunks (decoded as a client does, with a streaming UTF-8 decoder) sees exactly what was sent.

const breaks = fc.constantFrom('\n', '\r', '\r\n', '\n\r', '\r\r')
/** Text full of the characters that matter to framing: line breaks, colons, spaces, BOMs, astral characters. */
const text = fc.array(fc.oneof(
  { arbitrary: fc.string({ unit: 'grapheme' }), weight: 3 },
  { arbitrary: breaks, weight: 2 },
  { arbitrary: fc.constantFrom(':', ' ', 'data: ', 'id: ', '\ufeff', '\u2028', '\0', '🎉'), weight: 1 }
), { maxLength: 12 }).map(parts => parts.join(''))
const withoutBreaks = (value: string): boolean => !/[\r\n]/.test(value)
const id = text.filter(value => withoutBreaks(value) && !value.includes('\0'))
const event = text.filter(withoutBreaks)

interface Sent {
  data: string
  options: MessageOptions
}

const message: fc.Arbitrary<Sent> = fc.record({
  data: text,
  options: fc.record({ id, event }, { requiredKeys: [] })
})

/** Splits bytes at random points, then decodes and parses them as a streaming client would. */
function parseInChunks (bytes: Buffer, cuts: number[]): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: event => events.push(event) })
  const decoder = new TextDecoder('utf-8', { ignoreBOM: false })
  const points = [...new Set(cuts.map(cut => cut % (bytes.length + 1)))].sort((a, b) => a - b)
  let start = 0
  for (const point of [...points, bytes.length]) {
    parser.feed(decoder.decode(bytes.subarray(start, point), { stream: true }))
    start = point
  }
  parser.feed(decoder.decode())
  return events
}

t.test('for any data, id and event, the client sees exactly what was sent, CR and CRLF as LF', async t => {
  fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (sent, cuts) => {
    const bytes = Buffer.concat(sent.map(({ data, options }) => encodeMessage(data, options)))
    const expected = sent.map(({ data, options }) => ({
      id: options.id,
      event: options.event === '' ? undefined : options.event,
      data: data.replace(/\r\n|\r/g, '\n')
    }))
    const received = parseInChunks(bytes, cuts).map(({ id, event, data }) => ({ id, event, data }))
    // Throws, so fast-check shrinks a failure to its smallest case.
    deepStrictEqual(received, expected)
  }), { numRuns: 300 })
  t.pass('300 runs')
})

t.test('byte data gives the same events as the same text', async t => {
  fc.assert(fc.property(message, ({ data, options }) => {
    const fromBytes = encodeMessage(new TextEncoder().encode(data), options)
    return fromBytes.equals(encodeMessage(data, options))
  }), { numRuns: 300 })
  t.pass('300 runs')
})

const withBreak = fc.tuple(text, breaks, text).map(([a, b, c]) => a + b + c)
const withNul = fc.tuple(text, text).map(([a, b]) => `${a}\0${b}`).filter(withoutBreaks)

t.test('an id, event or comment with CR, LF (or NUL in an id) throws FST_SSE_INVALID_FIELD and no byte reaches the wire', async t => {
  const app = await build(t)
  const invalid = fc.oneof(
    withBreak.map(value => ({ kind: 'id', value })),
    withNul.map(value => ({ kind: 'id', value })),
    withBreak.map(value => ({ kind: 'event', value })),
    withBreak.map(value => ({ kind: 'comment', value }))
  )
  let current = { kind: 'id', value: '' }
  let thrown: unknown
  app.get('/', async (_request, reply) => {
    const stream = reply.sse()
    stream.message('before')
    try {
      if (current.kind === 'comment') stream.comment(current.value)
      else stream.message('lost', { [current.kind]: current.value })
      thrown = undefined
    } catch (err) {
      thrown = err
    }
    stream.message('after')
    await stream.close()
  })
  await fc.assert(fc.asyncProperty(invalid, async field => {
    current = field
    const response = await app.inject('/')
    return (thrown as { code?: string } | undefined)?.code === 'FST_SSE_INVALID_FIELD' &&
      response.body === 'data: before\n\ndata: after\n\n'
  }), { numRuns: 200 })
  t.pass('200 runs')
})
