import { createParser } from 'eventsource-parser'
import fc from 'fast-check'
import { deepStrictEqual } from 'node:assert'
import t from 'tap'
import { EventStreamParser, type ParsedEvent } from '../index.js'

function parse (chunks: string[]): ParsedEvent[] {
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser(event => events.push(event))
  for (const chunk of chunks) parser.feed(chunk)
  return events
}

t.test('the WHATWG rules, one by one', async t => {
  t.same(parse(['data: \ufeffa\n\n']), [{ type: 'message', data: '\ufeffa', lastEventId: '' }], 'a BOM inside data is data')
  t.same(parse(['data:a\r', '\ndata:b\r\rdata: c\n\n']), [{ type: 'message', data: 'a\nb', lastEventId: '' },
    { type: 'message', data: 'c', lastEventId: '' }], 'CRLF split across chunks is one line end; CR CR is two')
  t.same(parse(['data\n\n']), [{ type: 'message', data: '', lastEventId: '' }], 'a field with no colon has an empty value')
  t.same(parse([': comment\n\n']), [], 'comments dispatch nothing')
  t.same(parse(['event: e\n\n']), [], 'no data, no event')
  t.same(parse(['id: 1\n\ndata: x\n\n']), [{ type: 'message', data: 'x', lastEventId: '1' }], 'an id without data still sets the last id')
  const positionOnly = new EventStreamParser(() => t.fail('an id-only frame dispatches nothing'))
  positionOnly.feed('id: 42\n\n')
  t.equal(positionOnly.lastEventId, '42', 'lastEventId: what a reconnecting client sends, after an id-only frame too')
  t.same(parse(['id: a\0b\ndata: x\n\n']), [{ type: 'message', data: 'x', lastEventId: '' }], 'an id with NUL is ignored')
  t.same(parse(['retry: 10\ndata: x\n\nretry: 1x\ndata: y\n\n']), [
    { type: 'message', data: 'x', lastEventId: '', retry: 10 },
    { type: 'message', data: 'y', lastEventId: '' }
  ], 'retry only when all digits')
  t.same(parse(['id: 5\nevent: e\ndata: x\n\ndata: y\n\n']), [
    { type: 'e', data: 'x', lastEventId: '5', id: '5' },
    { type: 'message', data: 'y', lastEventId: '5' }
  ], 'the last id carries over; the event type does not')
  // The id of a frame counts once the frame ends (its blank line), as in EventSource: cut anywhere before, and a
  // reconnecting client asks for that frame again.
  const frame = 'id: 2\ndata: b\n\n'
  for (let cut = 0; cut <= frame.length; cut++) {
    const cutOff = new EventStreamParser(() => {}, '1')
    cutOff.feed(frame.slice(0, cut))
    t.equal(cutOff.lastEventId, cut === frame.length ? '2' : '1', `a frame cut after ${cut} bytes`)
  }
  const idOnly = new EventStreamParser(() => {})
  idOnly.feed('id: 7\n')
  t.equal(idOnly.lastEventId, '', 'an id-only frame without its blank line sets nothing yet')
  idOnly.feed('\n')
  t.equal(idOnly.lastEventId, '7', 'and sets the last id once it ends')
  const hinted = new EventStreamParser(() => t.fail('a retry-only frame dispatches nothing'), 'resumed')
  t.equal(hinted.retry, undefined)
  hinted.feed('retry: 700\n\nretry: soon\n\n')
  t.equal(hinted.retry, 700, 'retry: the reconnection time a hint sent alone set; a bad one leaves it')
  t.equal(hinted.lastEventId, 'resumed', 'the id a parser starts from, as a reconnecting client keeps its own')
  t.same(parse(['data: unterminated']), [], 'an event without its blank line is not dispatched')
  t.same(parse(['unknown: x\ndata:  two spaces\n\n']), [{ type: 'message', data: ' two spaces', lastEventId: '' }])
})

t.test('agrees with eventsource-parser on any input, cut anywhere', async t => {
  const alphabet = fc.constantFrom('\n', '\r', '\r\n', ':', ' ', 'data', 'id', 'event', 'retry', '1', 'x', '\0', '\ufeff', 'é')
  fc.assert(fc.property(fc.array(alphabet, { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 8 }), (parts, cuts) => {
    // A final LF: eventsource-parser holds a trailing CR back until it sees whether an LF follows, where the spec
    // (and this parser) end the line at once. With the LF both have seen the same complete lines.
    const input = parts.join('') + '\n'
    const points = [...new Set(cuts.map(cut => cut % (input.length + 1)))].sort((a, b) => a - b)
    const chunks = [...points, input.length].map((point, i, all) => input.slice(i === 0 ? 0 : all[i - 1], point))
    const ours = parse(chunks).map(({ type, data, id }) => ({ type, data, id }))
    const reference: Array<{ type: string, data: string, id: string | undefined }> = []
    const parser = createParser({
      onEvent: ({ event, data, id }) => reference.push({ type: event ?? 'message', data, id })
    })
    for (const chunk of chunks) parser.feed(chunk)
    deepStrictEqual(ours, reference)
  }), { numRuns: 1000 })
  t.pass('1000 runs')
})
