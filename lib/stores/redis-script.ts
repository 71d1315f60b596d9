import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/**
 * One Lua script: EVALSHA, and EVAL when Redis does not have it (after a restart or a flush). Replies come as text,
 * or as Buffers for a script whose replies carry bytes (the frames of runs).
 */
export class Script {
  readonly #source: string
  readonly #sha: string
  readonly #buffers: boolean

  constructor (source: string, { buffers = false } = {}) {
    this.#source = source
    this.#sha = createHash('sha1').update(source).digest('hex')
    this.#buffers = buffers
  }

  async run (client: Redis, keys: string[], args: Array<string | number | Buffer>): Promise<unknown> {
    try {
      return await this.#send(client, 'evalsha', this.#sha, keys, args)
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
      return await this.#send(client, 'eval', this.#source, keys, args)
    }
  }

  async #send (client: Redis, command: string, script: string, keys: string[], args: Array<string | number | Buffer>): Promise<unknown> {
    const all = [script, keys.length, ...keys, ...args]
    return this.#buffers ? await client.callBuffer(command, all) : await client.call(command, all)
  }
}
