// The newsroom as two instances (ports 3000 and 3001) that share nothing but a Redis store: a chat message posted
// to one reaches the pages of both, the news published by the first reaches every page, and a page whose
// connection drops moves to the other instance and resumes there with no gap. `REDIS_URL=redis://127.0.0.1:6379
// npm start`. A real deployment runs the instances as processes behind a load balancer; here they share a process,
// and only Redis, so that one command starts the demo.
import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { RedisStore } from '../lib/stores/redis.js'
import { buildNewsroom, type Instance } from './newsroom.js'

export interface InstancesOptions {
  redisUrl: string
  /** Each run of the demo gets a history of its own unless a prefix is given. */
  prefix?: string
  tickMs: number
  /** The first instance's port (0: any free ones); the second listens on the next. */
  port: number
  host: string
}

export async function startInstances ({ redisUrl, prefix = `{newsroom-${Date.now()}}`, tickMs, port, host }: InstancesOptions): Promise<FastifyInstance[]> {
  const instances: Instance[] = []
  const apps: FastifyInstance[] = []
  for (const name of ['A', 'B']) {
    // Only A publishes the news; both serve pages, chat and streams.
    const store = new RedisStore({ connection: redisUrl, prefix, keyTtl: 60 * 60_000 })
    const app = await buildNewsroom({ tickMs: name === 'A' ? tickMs : 0, store, name, instances: () => instances })
    await app.listen({ port: port === 0 ? 0 : port + apps.length, host })
    instances.push({ name, url: `http://${host}:${(app.server.address() as AddressInfo).port}` })
    apps.push(app)
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { Promise.all(apps.map(app => app.close())).then(() => process.exit(0), () => process.exit(1)) })
  }
  return apps
}
