// A redis-server of a benchmark's own on a free loopback port, without persistence, so that its CPU is the
// benchmark's alone; stop() kills it and removes its folder.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

export async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

export async function startRedis (): Promise<{ url: string, port: number, stop: () => Promise<void> }> {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'bench-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const url = `redis://127.0.0.1:${port}`
  const probe = new Redis(url, { retryStrategy: () => 20, maxRetriesPerRequest: null })
  probe.on('error', () => {})
  await probe.ping()
  probe.disconnect()
  return { url, port, stop: async () => { child.kill('SIGKILL'); await once(child, 'exit'); await rm(dir, { recursive: true, force: true }) } }
}

/** Redis's own CPU (user + system) so far, in microseconds. */
export async function redisCpuUs (admin: Redis): Promise<number> {
  const info = await admin.info('cpu')
  const field = (name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1])
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6
}
