// The benchmark's client side: raw TCP sockets that count frame ends ("\n\n") and spot the end of a chunked body
// ("0\r\n\r\n") without parsing anything, so that the client is never the bottleneck, and without trusting the
// server to close the socket.
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import readline from 'node:readline'

const LF = 10
const END = Buffer.from('0\r\n\r\n')

export class Counter {
  frames = 0
  headers = false
  ended = false
  #last = 0
  #tail = Buffer.alloc(0)
  onFrames: (() => void) | undefined

  feed (chunk: Buffer): void {
    let i = chunk.indexOf(LF)
    if (!this.headers) {
      const end = chunk.indexOf('\r\n\r\n')
      if (end === -1) return
      this.headers = true
      i = chunk.indexOf(LF, end + 4)
    }
    let frames = 0
    while (i !== -1) {
      if ((i === 0 ? this.#last : chunk[i - 1]) === LF) frames++
      i = chunk.indexOf(LF, i + 1)
    }
    this.#last = chunk[chunk.length - 1]
    this.#tail = Buffer.concat([this.#tail, chunk.subarray(-5)]).subarray(-5)
    if (this.#tail.equals(END)) this.ended = true
    if (frames > 0) {
      this.frames += frames
      this.onFrames?.()
    } else if (this.ended) this.onFrames?.()
  }
}

/** A GET on a new connection; the counter sees every byte of the response. */
export async function open (port: number, path: string): Promise<{ socket: net.Socket, counter: Counter }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  const counter = new Counter()
  socket.on('data', chunk => counter.feed(chunk))
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  return { socket, counter }
}

/** Opens `count` connections, `concurrency` at a time. */
/** `count` streams, `concurrency` opening at once; a path function gives the i-th its own path. Resolves in order of i. */
export async function openMany (port: number, path: string | ((i: number) => string), count: number, concurrency = 200): Promise<Array<{ socket: net.Socket, counter: Counter }>> {
  const all: Array<{ socket: net.Socket, counter: Counter }> = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++
      all[i] = await open(port, typeof path === 'string' ? path : path(i))
    }
  }))
  return all
}

/** One request on its own connection to a benchmark server's control routes; resolves with the body. */
export async function request (port: number, method: string, path: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false }, res => {
      let body = ''
      res.on('data', chunk => { body += chunk })
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The lines a child process prints on stdout. */
export function lines (child: ChildProcessWithoutNullStreams): AsyncIterator<string> {
  return readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
}

/** The next line, or an error if the process ended first. */
export async function nextLine (reader: AsyncIterator<string>): Promise<string> {
  const { value, done } = await reader.next()
  if (done === true) throw new Error('process ended')
  return value
}
