import { EventSource as PackageEventSource } from 'eventsource'
import t from 'tap'
import { EventSource as UndiciEventSource } from 'undici'
import { cases, collectEvents, expectedBy } from './conformance/cases.js'
import { conformanceServer } from './conformance/server.js'
import { listen } from './helpers.js'

// Real, independent clients read the server's bytes over loopback and report what their EventSource saw.
const clients = { undici: UndiciEventSource, eventsource: PackageEventSource }
const TIMEOUT = 8000

t.test('real clients see exactly what was sent', async t => {
  const app = await conformanceServer()
  t.teardown(() => app.close())
  const base = await listen(app)
  for (const [client, EventSourceImpl] of Object.entries(clients)) {
    t.test(client, async t => {
      for (const [name, testCase] of Object.entries(cases)) {
        const received = await collectEvents(EventSourceImpl, `${base}/case/${name}`, testCase.types, TIMEOUT)
        t.same(received, expectedBy(client, testCase.expected), name)
      }
      const resumed = await collectEvents(EventSourceImpl, `${base}/reconnect`, [], TIMEOUT)
      t.same(resumed, [
        { type: 'message', data: 'one', lastEventId: 'r1' },
        { type: 'message', data: 'two', lastEventId: 'r2' },
        { type: 'message', data: 'resumed after r2', lastEventId: 'r3' }
      ], 'after the server closed, the client reconnected with Last-Event-ID and stream.lastEventId read it')
      const missed = await collectEvents(EventSourceImpl, `${base}/resume?topic=${client}`, [], TIMEOUT)
      // The eventsource package (4.x) ignores a frame that has an id and no data, so it reconnects as a new client
      // and misses what was published meanwhile (fixed in its 5.1.1, which needs Node 22).
      const resumes = client !== 'eventsource'
      t.same(missed, resumes
        ? [
            { type: 'message', data: 'missed 1', lastEventId: `${client}-1` },
            { type: 'message', data: 'missed 2', lastEventId: `${client}-2` }
          ]
        : [], 'an id-only frame set the Last-Event-ID the client resumed from')
      const retry = 400
      const events = await collectEvents(EventSourceImpl, `${base}/retry?token=${client}&ms=${retry}`, ['waited'], TIMEOUT)
      const waited = events[events.length - 1]
      t.equal(waited.type, 'waited')
      const ms = Number(waited.data)
      // Clients wait 3 s by default, so a wait near 400 ms shows the hint was honoured.
      t.ok(ms >= retry * 0.9 && ms < 2500, `the client waited the retry hint: ${ms} ms for ${retry} ms`)
    })
  }
})

t.test('a collector that never sees `done` gives up with what it received', async t => {
  const app = await conformanceServer()
  t.teardown(() => app.close())
  const base = await listen(app)
  await t.rejects(collectEvents(UndiciEventSource, `${base}/case/seed`, ['greet'], 1), /timed out/)
})
