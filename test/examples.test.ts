import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { get, readUntil } from './helpers.js'

// The demo that `npm start` runs, from the build that `npm test` makes first.
const CLOCK = fileURLToPath(new URL('../dist/examples/clock.js', import.meta.url))

t.test('the clock demo streams ticks and replays the missed ones after a reconnect', async t => {
  // A tick every 5 ms, so that the 120-tick history fills and rolls over within the test.
  const child = spawn(process.execPath, [CLOCK], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', TICK_MS: '5' } })
  t.teardown(() => child.kill())
  let log = ''
  const url = await new Promise<string>(resolve => {
    child.stdout.on('data', chunk => {
      log += chunk
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log)
      if (match !== null) resolve(match[1])
    })
  })
  const page = await readUntil(await get(`${url}/`), '</html>')
  t.match(page, /new EventSource\('\/clock'\)/)

  const live = await get(`${url}/clock`)
  t.equal(live.headers['content-type'], 'text/event-stream; charset=utf-8')
  const first = await readUntil(live, '"replayed":false')
  t.match(first, /^retry: 1000\n\nid: (\d+)\nevent: tick\ndata: \{"n":\1,"time":"[^"]+","replayed":false\}\n\n/)
  live.destroy()

  // Wait until the history has rolled over: ticks 1 and 2 are gone, so the replay starts later.
  await new Promise(resolve => setTimeout(resolve, 1000))
  const resumed = await get(`${url}/clock`, { 'last-event-id': '1' })
  const replay = await readUntil(resumed, '"replayed":false')
  const replayed = [...replay.matchAll(/"n":(\d+),"time":"[^"]+","replayed":true/g)].map(match => Number(match[1]))
  t.equal(replayed.length, 120, 'the whole bounded history is replayed')
  t.ok(replayed[0] > 2, `the oldest ticks were dropped (replay starts at ${replayed[0]})`)
  t.ok(replayed.every((n, i) => i === 0 || n === replayed[i - 1] + 1), 'in order, without a gap')
  const response = await fetch(`${url}/drop`, { method: 'POST' })
  t.same(await response.json(), { dropped: 1 })
  resumed.resume()
  await once(resumed, 'end')

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM closes the server cleanly')
})
