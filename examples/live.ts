// A live newsroom over Server-Sent Events: two chat rooms and a news feed, broadcast through the hub. Run `npm start`,
// open http://localhost:3000 in two windows and chat; press "Drop connection" or reload the page: it resumes from its
// last event id and nothing is lost. With REDIS_URL set, two instances share one history through Redis
// (instances.ts).
import { buildNewsroom } from './newsroom.js'

// The settings come from the environment, for the demo's own tests; `npm start` takes the defaults.
/* c8 ignore start */
const tickMs = Number(process.env.TICK_MS ?? 2000)
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? 'localhost'
if (process.env.REDIS_URL !== undefined) {
  const { startInstances } = await import('./instances.js')
  await startInstances({ redisUrl: process.env.REDIS_URL, prefix: process.env.REDIS_PREFIX, tickMs, port, host })
} else {
  const app = await buildNewsroom({ tickMs })
  await app.listen({ port, host })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
}
/* c8 ignore stop */
