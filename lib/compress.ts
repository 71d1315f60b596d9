import { constants, crc32, deflateRawSync } from 'node:zlib'
import { FST_SSE_INVALID_OPTION } from './errors.js'

/** The content codings a stream can be compressed with. */
export type StreamEncoding = 'gzip' | 'deflate'

export interface CompressionOptions {
  /** The codings offered, in the server's order of preference (default ['gzip', 'deflate']). */
  encodings?: readonly StreamEncoding[]
  /** zlib's compression level, 1 (fastest) to 9 (smallest); default 6. */
  level?: number
  /**
   * Bytes of the stream's recent text that each stream keeps, so that an event compresses against the ones before
   * it (256 to 32768, default 4096). The compressor itself lives only while a write is compressed.
   */
  window?: number
}

export interface ResolvedCompression {
  encodings: readonly StreamEncoding[]
  level: number
  window: number
}

const ENCODINGS: readonly StreamEncoding[] = ['gzip', 'deflate']
const DEFAULT_LEVEL = 6
const DEFAULT_WINDOW = 4096
const MIN_WINDOW = 256
/** What deflate keeps free at the end of its window (MIN_LOOKAHEAD): bytes of the window a dictionary cannot use. */
const LOOKAHEAD = 262
/** deflate's largest back-reference: a decoder keeps this much of the text, never more. */
const MAX_WINDOW = 32768

/** Validates the `compression` option (of the plugin or of one stream): undefined when compression is off. */
export function resolveCompression (option: boolean | CompressionOptions | undefined, name = 'compression'): ResolvedCompression | undefined {
  if (option === undefined || option === false) return undefined
  if (option === true) return { encodings: ENCODINGS, level: DEFAULT_LEVEL, window: DEFAULT_WINDOW }
  if (typeof option !== 'object' || option === null) {
    throw new FST_SSE_INVALID_OPTION(name, `expected a boolean or an object, got ${String(option)}`)
  }
  const { encodings = ENCODINGS, level = DEFAULT_LEVEL, window = DEFAULT_WINDOW } = option
  if (!Array.isArray(encodings) || encodings.length === 0 || !encodings.every(encoding => ENCODINGS.includes(encoding)) ||
    new Set(encodings).size !== encodings.length) {
    throw new FST_SSE_INVALID_OPTION(`${name}.encodings`, `expected a non-empty list of distinct codings out of ${ENCODINGS.join(', ')}, got ${JSON.stringify(encodings)}`)
  }
  if (!(Number.isInteger(level) && level >= 1 && level <= 9)) {
    throw new FST_SSE_INVALID_OPTION(`${name}.level`, `expected an integer in 1-9, got ${String(level)}`)
  }
  if (!(Number.isInteger(window) && window >= MIN_WINDOW && window <= MAX_WINDOW)) {
    throw new FST_SSE_INVALID_OPTION(`${name}.window`, `expected an integer of bytes in ${MIN_WINDOW}-${MAX_WINDOW}, got ${String(window)}`)
  }
  return { encodings: [...encodings], level, window }
}

/**
 * The coding to answer an Accept-Encoding header with (RFC 9110, section 12.5.3): the offered coding with the
 * highest q-value, the server's order breaking ties; `*` stands for every coding the header does not name. A
 * missing header, or one that refuses every offered coding, gets undefined: identity (even when identity itself is
 * refused, the one answer that every client can read).
 */
export function negotiateEncoding (header: string | string[] | undefined, offered: readonly StreamEncoding[]): StreamEncoding | undefined {
  if (header === undefined) return undefined
  const weights = new Map<string, number>()
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [token, ...parameters] = part.split(';')
    const name = token.trim().toLowerCase()
    if (name === '') continue
    let q = 1
    for (const parameter of parameters) {
      const [key, value] = parameter.split('=')
      if (key.trim().toLowerCase() === 'q') q = qValue(value)
    }
    // x-gzip is gzip (RFC 9110, section 8.4.1.3).
    const coding = name === 'x-gzip' ? 'gzip' : name
    if (!weights.has(coding)) weights.set(coding, q)
  }
  let best: StreamEncoding | undefined
  let bestQ = 0
  for (const encoding of offered) {
    const q = weights.get(encoding) ?? weights.get('*') ?? 0
    if (q > bestQ) {
      best = encoding
      bestQ = q
    }
  }
  return best
}

/** A qvalue as RFC 9110 writes it (0 to 1, three decimals at most); anything else counts as 0, not acceptable. */
function qValue (text: string | undefined): number {
  const value = text?.trim() ?? ''
  return /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(value) ? Number(value) : 0
}

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff])
/** zlib's header for a 32 KiB window at the default level: CMF 0x78, FLG 0x9c (a multiple of 31 together). */
const ZLIB_HEADER = Buffer.from([0x78, 0x9c])
/** An empty final block with fixed codes: ends the deflate data after the last flush. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00])
const EMPTY = Buffer.alloc(0)

/** The last bytes of a stream's text (at most its window), which the next write is compressed against. Immutable. */
interface History {
  readonly bytes: Buffer
  /** crc32 of the bytes: streams whose texts end the same are found by it, and share one History from then on. */
  readonly crc: number
}

/** What a write made of one history: the compressed bytes, and the history after it. */
interface Step {
  readonly chunk: Uint8Array
  readonly from: History
  readonly compressed: Buffer
  readonly to: History
}

/** Each setting's empty history: where every stream with those settings starts. */
const roots = new Map<string, History>()

/**
 * This tick's steps, by the crc of the chunk written and of the history it was compressed against: a frame that goes
 * to many streams (a hub event, a heartbeat, the same message() to each) is compressed once for every stream whose
 * text ends the same, and those streams share the history after it. Kept for the rest of the tick only, so that no
 * stream's text outlives the fan-out.
 */
let steps = new Map<number, Map<number, Step>>()
function forgetSteps (): void {
  steps = new Map()
}

/**
 * Compresses one stream's body, one write at a time, in constant memory. Each write is compressed at once and ends
 * in a sync flush (the client can decode it whole before the next one is sent) by a compressor that lives for that
 * write only: it starts from the last `window` bytes of the stream's text as its dictionary, so that its output
 * continues the same deflate data (a sync flush leaves it on a byte boundary, and a decoder's window holds that
 * text). Between writes a stream keeps those bytes and a checksum, not a compressor's hundreds of KiB; streams whose
 * texts end the same keep one copy, and a frame written to all of them in a tick is compressed once: deflate's output
 * depends on the dictionary and the input alone, so each gets the same bytes it would have compressed itself.
 */
export class StreamEncoder {
  readonly encoding: StreamEncoding
  readonly #level: number
  readonly #window: number
  readonly #windowBits: number
  #history: History
  #started = false
  #check: number
  #length = 0

  constructor (encoding: StreamEncoding, settings: ResolvedCompression) {
    this.encoding = encoding
    this.#level = settings.level
    this.#window = settings.window
    // The write's compressor needs a window that holds the dictionary and deflate's lookahead, no more: one that
    // allocates less (under malloc's mmap threshold) is made and freed much faster, and what it emits is the same.
    this.#windowBits = Math.min(15, Math.max(9, Math.ceil(Math.log2(settings.window + LOOKAHEAD))))
    this.#check = encoding === 'gzip' ? 0 : 1
    const setting = `${settings.level}:${settings.window}`
    let root = roots.get(setting)
    if (root === undefined) {
      root = { bytes: EMPTY, crc: 0 }
      roots.set(setting, root)
    }
    this.#history = root
  }

  /** The compressed form of the next bytes of the body. */
  encode (chunk: Uint8Array): Buffer {
    const step = this.#step(chunk)
    this.#history = step.to
    this.#length = (this.#length + chunk.length) % 0x100000000
    this.#check = this.encoding === 'gzip' ? crc32(chunk, this.#check) : adler32(chunk, this.#check)
    return this.#start(step.compressed)
  }

  /** What ends the body: a final empty block and the coding's trailer (the header too, if nothing was written). */
  finish (): Buffer {
    const trailer = Buffer.allocUnsafe(this.encoding === 'gzip' ? 8 : 4)
    if (this.encoding === 'gzip') {
      trailer.writeUInt32LE(this.#check >>> 0, 0)
      trailer.writeUInt32LE(this.#length >>> 0, 4)
    } else {
      trailer.writeUInt32BE(this.#check >>> 0, 0)
    }
    return this.#start(Buffer.concat([FINAL_BLOCK, trailer]))
  }

  /** This tick's step for the chunk from this stream's history, or a new one (then kept for the tick). */
  #step (chunk: Uint8Array): Step {
    const from = this.#history
    const chunkCrc = crc32(chunk)
    let byHistory = steps.get(chunkCrc)
    const known = byHistory?.get(from.crc)
    if (known !== undefined && (known.from === from || known.from.bytes.equals(from.bytes)) &&
      (known.chunk === chunk || Buffer.from(known.chunk.buffer, known.chunk.byteOffset, known.chunk.length).equals(chunk))) return known
    const compressed = deflateRawSync(chunk, {
      level: this.#level,
      windowBits: this.#windowBits,
      finishFlush: constants.Z_SYNC_FLUSH,
      ...(from.bytes.length > 0 ? { dictionary: from.bytes } : undefined)
    })
    const bytes = following(from.bytes, chunk, this.#window)
    const step: Step = { chunk, from, compressed, to: { bytes, crc: crc32(bytes) } }
    if (byHistory === undefined) {
      if (steps.size === 0) process.nextTick(forgetSteps)
      byHistory = new Map()
      steps.set(chunkCrc, byHistory)
    }
    byHistory.set(from.crc, step)
    return step
  }

  #start (data: Buffer): Buffer {
    if (this.#started) return data
    this.#started = true
    return Buffer.concat([this.encoding === 'gzip' ? GZIP_HEADER : ZLIB_HEADER, data])
  }
}

/** The last `window` bytes of a text that ended with `before` and goes on with `chunk`. */
function following (before: Buffer, chunk: Uint8Array, window: number): Buffer {
  if (chunk.length >= window) return Buffer.from(chunk.subarray(chunk.length - window))
  const kept = Math.min(before.length, window - chunk.length)
  // Its own memory (not a slice of the shared pool): a stream keeps it until its next write.
  const bytes = Buffer.allocUnsafeSlow(kept + chunk.length)
  before.copy(bytes, 0, before.length - kept)
  bytes.set(chunk, kept)
  return bytes
}

const ADLER_MOD = 65521
/** Bytes that can be summed before the sums must be reduced, so that they stay exact in a double. */
const ADLER_BLOCK = 5552

/** The Adler-32 checksum of the zlib format (RFC 1950), continued from `adler`. */
export function adler32 (data: Uint8Array, adler = 1): number {
  let a = adler & 0xffff
  let b = (adler >>> 16) & 0xffff
  for (let start = 0; start < data.length; start += ADLER_BLOCK) {
    const end = Math.min(start + ADLER_BLOCK, data.length)
    for (let i = start; i < end; i++) {
      a += data[i]
      b += a
    }
    a %= ADLER_MOD
    b %= ADLER_MOD
  }
  return ((b << 16) | a) >>> 0
}
