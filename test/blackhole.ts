// A TCP proxy that can blackhole its connections, for the client's idle timeout (test/client, test/browser).
import { once } from 'node:events'
import net from 'node:net'
import type { Test } from 'tap'

/**
 * A TCP proxy in front of `port` whose open connections can be blackholed: they stay open and carry nothing either
 * way, as a connection does whose far end vanished (a laptop's sleep, a network switch) without a FIN or a RST.
 * `blackhole(path)` takes only the connections whose last request was for that path (a browser reuses connections).
 */
export async function blackholeProxy (t: Test, port: number): Promise<{ url: string, blackhole: (path?: string) => void }> {
  const open = new Set<{ blackholed: boolean, request: string }>()
  const sockets = new Set<net.Socket>()
  const proxy = net.createServer(client => {
    const upstream = net.connect(port, '127.0.0.1')
    const link = { blackholed: false, request: '' }
    open.add(link)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        client.destroy()
        upstream.destroy()
        open.delete(link)
      })
    }
    client.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1', 0, 200).split('\r\n')[0]
      if (/^[A-Z]+ \S+ HTTP\/1\.1$/.test(line)) link.request = line
      if (!link.blackholed) upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => { if (!link.blackholed) client.write(chunk) })
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    proxy.close()
  })
  return {
    url: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    blackhole: path => {
      for (const link of open) if (path === undefined || link.request.split(' ')[1]?.startsWith(path) === true) link.blackholed = true
    }
  }
}
