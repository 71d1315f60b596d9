/**
 * Event names mapped to the type of their JSON payload: `stream.send()` on the server, `connect()`'s listeners on the
 * client. One file that both ends import, with nothing in it that runs.
 */
export type EventMap = Record<string, unknown>
