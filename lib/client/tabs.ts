import type { ParsedEvent } from '../parse.js'
import type { ClientErrorCode } from './errors.js'

/** The connection's state: connecting (or waiting to reconnect), open, or closed for good. */
export type ClientState = 'connecting' | 'open' | 'closed'

/** An error as it crosses to another tab (structured clone keeps no class). */
export interface ErrorShape {
  code: ClientErrorCode
  message: string
  status: number | undefined
  retryable: boolean
}

/** What the tab holding the connection tells the others, and what a new tab asks. */
export type TabMessage =
  | { t: 'event', event: ParsedEvent }
  | { t: 'id', id: string }
  | { t: 'state', state: ClientState, error: ErrorShape | undefined }
  | { t: 'hello' }

export interface Tabs {
  /** Whether this tab holds the connection. */
  readonly leading: boolean
  post: (message: TabMessage) => void
  close: () => void
}

/**
 * Tabs of one origin share one connection: Web Locks elect the tab that holds it (`lead` runs while it does, and the
 * lock goes to the next tab when it returns or its tab closes), BroadcastChannel carries its events to the others.
 * Undefined where either API is missing: the client then connects on its own.
 */
export function shareTabs (name: string, lead: () => Promise<void>, receive: (message: TabMessage) => void): Tabs | undefined {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks
  if (locks === undefined || typeof BroadcastChannel !== 'function') return undefined
  const channel = new BroadcastChannel(name)
  const stop = new AbortController()
  const tabs = {
    leading: false,
    post: (message: TabMessage) => channel.postMessage(message),
    close () {
      stop.abort()
      channel.close()
    }
  }
  // The leader takes only a new tab's hello: events from a tab that led before it are already in its own replay.
  channel.onmessage = ({ data }: MessageEvent<TabMessage>) => { if (!tabs.leading || data.t === 'hello') receive(data) }
  locks.request(name, { signal: stop.signal }, async () => {
    tabs.leading = true
    await lead()
  }).catch(() => {}) // AbortError: the client closed while waiting for its turn.
  tabs.post({ t: 'hello' })
  return tabs
}
