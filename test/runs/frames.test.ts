import t from 'tap'
import { finalFrame, itemFrame, resumeIndex, runEventId } from '../../lib/runs/frames.js'

t.test('resumeIndex places only ids of this run within what it kept', async t => {
  const id = 'AbC-_9'
  t.equal(resumeIndex(runEventId(id, 7), id, 10), 7)
  t.equal(resumeIndex(`${id}.10`, id, 10), 10)
  for (const other of [undefined, 7, '', id, `${id}.`, `${id}.0`, `${id}.07`, `${id}.x`, `${id}.11`, `${id}x7`, `x${id}.7`, `${id}.1.2`, `${id}.${'9'.repeat(17)}`]) {
    t.equal(resumeIndex(other, id, 10), 0, `${String(other)} reads from the start`)
  }
})

t.test('items as frames: plain runs take what consume() takes, AI SDK runs send objects as JSON', async t => {
  t.equal(itemFrame('a\nb', 'events', 'r.1').toString(), 'id: r.1\ndata: a\ndata: b\n\n')
  t.equal(itemFrame(Buffer.from('x'), 'events', 'r.2').toString(), 'id: r.2\ndata: x\n\n')
  t.equal(itemFrame({ data: 'x', event: 'e', retry: 5, id: 'ignored' }, 'events', 'r.3').toString(), 'id: r.3\nevent: e\nretry: 5\ndata: x\n\n')
  t.equal(itemFrame({ json: { a: 1 }, event: 'e' }, 'events', 'r.4').toString(), 'id: r.4\nevent: e\ndata: {"a":1}\n\n')
  t.equal(itemFrame({ type: 'text-delta', delta: 'hi', id: 't' }, 'ai-sdk', 'r.5').toString(), 'id: r.5\ndata: {"type":"text-delta","delta":"hi","id":"t"}\n\n')
  t.throws(() => itemFrame(null, 'events', 'r.6'), { code: 'FST_SSE_INVALID_FIELD' })
  t.throws(() => itemFrame({ other: 1 }, 'events', 'r.6'), { code: 'FST_SSE_INVALID_FIELD' })
})

t.test('final frames: the id goes on the last event', async t => {
  t.equal(finalFrame('events', 'done', 'r.9').toString(), 'id: r.9\nevent: end\ndata: {"reason":"done"}\n\n')
  t.equal(finalFrame('ai-sdk', 'done', 'r.9').toString(), 'id: r.9\ndata: [DONE]\n\n')
  t.equal(finalFrame('ai-sdk', 'cancelled', 'r.9').toString(), 'data: {"type":"abort"}\n\nid: r.9\ndata: [DONE]\n\n')
  t.equal(finalFrame('ai-sdk', 'interrupted', 'r.9').toString(),
    'data: {"type":"error","errorText":"The answer was interrupted: the server running it stopped"}\n\nid: r.9\ndata: [DONE]\n\n')
})
