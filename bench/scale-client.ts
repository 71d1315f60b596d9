// A client worker of the scale scenario: `node dist/bench/scale-client.js <port> <count> <source address>
// [accept-encoding]` (the last one for bench/compress.ts: compressed streams are read but not decoded).
// Opens `count` streams from its own loopback source address (each address has its own ephemeral ports), says
// "ready" once every stream has its headers, then for each line "watch <marker>" on stdin answers "got" once every
// stream received the marker. One process per few thousand streams: each process has its own descriptor limit.
import net from 'node:net'
import readline from 'node:readline'

const [port, count, localAddress, acceptEncoding] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4], process.argv[5]]
const requestHead = `GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n${acceptEncoding === undefined ? '' : `Accept-Encoding: ${acceptEncoding}\r\n`}\r\n`
let marker: string | undefined
let waiting = 0
const seen: boolean[] = []

function open (i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress })
    let headers = false
    socket.on('data', (chunk: Buffer) => {
      if (!headers && chunk.includes('\r\n\r\n')) {
        headers = true
        resolve()
      }
      if (marker !== undefined && !seen[i] && chunk.includes(marker)) {
        seen[i] = true
        if (--waiting === 0) process.stdout.write('got\n')
      }
    })
    socket.on('error', reject)
    socket.once('connect', () => socket.write(requestHead))
  })
}

const CONCURRENCY = 100
let next = 0
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (next < count) await open(next++)
}))
process.stdout.write('ready\n')
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [command, value] = line.split(' ')
  if (command === 'watch') {
    marker = value
    waiting = count
    seen.length = 0
  }
}
