// Three realistic event streams for bench/compress.ts, deterministic (a seeded generator): JSON price ticks, chat
// messages, and a model's tokens. Each returns its n-th frame as the server would write it.
const WORDS = ('the quick brown fox jumps over lazy dog server event stream client browser reconnect history topic ' +
  'price market order trade user message hello world today tomorrow please thanks yes no maybe great idea meeting ' +
  'room deploy build release fix review merge ship coffee lunch later sounds good').split(' ')

export type StreamKind = 'prices' | 'chat' | 'tokens'
export const STREAM_KINDS: StreamKind[] = ['prices', 'chat', 'tokens']

export function frames (kind: StreamKind, count: number, seed = 7): Buffer[] {
  let state = seed
  const random = (): number => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]
  const make = {
    prices: (i: number) => `id: ${100000 + i}\nevent: price\ndata: {"symbol":"${pick(['ACME', 'INIT', 'GLOBX', 'UMBR', 'CYBD'])}",` +
      `"bid":${(100 + random() * 50).toFixed(2)},"ask":${(100 + random() * 50).toFixed(2)},"volume":${Math.floor(random() * 100000)},` +
      `"at":${1764500000000 + i * 173}}\n\n`,
    chat: (i: number) => `id: ${200000 + i}\nevent: chat\ndata: {"room":"${pick(['general', 'random', 'support'])}","user":` +
      `{"id":${Math.floor(random() * 500)},"name":"${pick(['alice', 'bob', 'carol', 'dave', 'erin', 'frank'])}"},"text":` +
      `"${Array.from({ length: 3 + Math.floor(random() * 20) }, () => pick(WORDS)).join(' ')}","sentAt":` +
      `"2026-11-30T17:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')}.000Z"}\n\n`,
    tokens: (i: number) => `event: token\ndata: {"text":"${random() < 0.8 ? ' ' : ''}${pick(WORDS)}","index":${i}}\n\n`
  }[kind]
  return Array.from({ length: count }, (_, i) => Buffer.from(make(i)))
}
