import { FST_SSE_INVALID_FILTER, FST_SSE_INVALID_TAGS } from './errors.js'

/** An event's tags: string values under names, given at publish time and kept with the event by the store. */
export type Tags = Readonly<Record<string, string>>

/**
 * A subscriber's filter on the tags of its topics' events: data, not a function, so that it is checked once at
 * subscribe time and evaluated without allocating. A tag an event does not carry equals nothing (`not` of it holds).
 */
export type TagFilter =
  | { readonly tag: string, readonly eq: string }
  | { readonly tag: string, readonly in: readonly string[] }
  | { readonly and: readonly TagFilter[] }
  | { readonly or: readonly TagFilter[] }
  | { readonly not: TagFilter }

/** A filter checked and compiled: `test` says whether an event's tags pass, `key` is the same for equal filters. */
export interface CompiledFilter {
  readonly test: (tags: Tags | undefined) => boolean
  readonly key: string
}

/** Tags an event carries at most, and the length of a tag's name and value. */
export const MAX_TAGS = 32
export const MAX_TAG_NAME = 64
export const MAX_TAG_VALUE = 256
/** A filter's nesting and its size (operators and `in` values together). */
export const MAX_FILTER_DEPTH = 8
export const MAX_FILTER_SIZE = 256

const EMPTY: Tags = Object.freeze(Object.create(null) as Tags)
/**
 * The tags of an event whose tags a store could not read back (a foreign or corrupt message): no filter lets it
 * through, `not` included, so that a filter stays a boundary; subscribers without a filter still get the event.
 */
export const UNREADABLE_TAGS: Tags = Object.freeze(Object.create(null) as Tags)
const hasOwn = Object.prototype.hasOwnProperty

/**
 * The tags of a publish, checked before anything is kept; an empty object is no tags, a tag whose value is undefined
 * is left out. FST_SSE_INVALID_TAGS else.
 */
export function checkTags (tags: unknown): Tags | undefined {
  if (tags === undefined) return undefined
  if (!isPlainObject(tags)) throw new FST_SSE_INVALID_TAGS(`expected an object of string values, got ${describe(tags)}`)
  // A tag whose value is undefined is no tag (as JSON.stringify() leaves out such a field).
  const names = Object.keys(tags).filter(name => (tags as Record<string, unknown>)[name] !== undefined)
  if (names.length === 0) return undefined
  if (names.length > MAX_TAGS) throw new FST_SSE_INVALID_TAGS(`${names.length} tags, at most ${MAX_TAGS}`)
  const copy: Record<string, string> = Object.create(null)
  for (const name of names) {
    checkName(name, FST_SSE_INVALID_TAGS)
    const value = (tags as Record<string, unknown>)[name]
    if (typeof value !== 'string') throw new FST_SSE_INVALID_TAGS(`tag ${JSON.stringify(name)} is ${describe(value)}, expected a string`)
    if (value.length > MAX_TAG_VALUE) throw new FST_SSE_INVALID_TAGS(`tag ${JSON.stringify(name)} is longer than ${MAX_TAG_VALUE} characters`)
    copy[name] = value
  }
  return copy
}

/**
 * Checks a filter (operators known, names and values strings, depth and size bounded) and compiles it to a test.
 * FST_SSE_INVALID_FILTER for anything else, so that a bad filter is refused at subscribe time.
 */
export function compileFilter (filter: unknown): CompiledFilter {
  const budget = { left: MAX_FILTER_SIZE }
  const node = compile(filter, 1, budget, 'filter')
  return { test: tags => tags !== UNREADABLE_TAGS && node(tags ?? EMPTY), key: node.key }
}

type Node = ((tags: Tags) => boolean) & { key: string }

function compile (filter: unknown, depth: number, budget: { left: number }, at: string): Node {
  if (depth > MAX_FILTER_DEPTH) throw new FST_SSE_INVALID_FILTER(`${at} is nested deeper than ${MAX_FILTER_DEPTH} levels`)
  if (--budget.left < 0) throw new FST_SSE_INVALID_FILTER(`the filter has more than ${MAX_FILTER_SIZE} operators and values`)
  if (!isPlainObject(filter)) throw new FST_SSE_INVALID_FILTER(`${at} is ${describe(filter)}, expected an object`)
  const keys = Object.keys(filter)
  const f = filter as Record<string, unknown>
  if (keys.length === 2 && hasOwn.call(f, 'tag') && hasOwn.call(f, 'eq')) {
    const name = checkName(f.tag, FST_SSE_INVALID_FILTER, `${at}.tag`)
    const value = f.eq
    if (typeof value !== 'string') throw new FST_SSE_INVALID_FILTER(`${at}.eq is ${describe(value)}, expected a string`)
    return keyed(tags => hasOwn.call(tags, name) && tags[name] === value, `${JSON.stringify(name)}=${JSON.stringify(value)}`)
  }
  if (keys.length === 2 && hasOwn.call(f, 'tag') && hasOwn.call(f, 'in')) {
    const name = checkName(f.tag, FST_SSE_INVALID_FILTER, `${at}.tag`)
    const list = f.in
    if (!Array.isArray(list)) throw new FST_SSE_INVALID_FILTER(`${at}.in is ${describe(list)}, expected an array of strings`)
    budget.left -= list.length
    if (budget.left < 0) throw new FST_SSE_INVALID_FILTER(`the filter has more than ${MAX_FILTER_SIZE} operators and values`)
    for (const value of list) if (typeof value !== 'string') throw new FST_SSE_INVALID_FILTER(`${at}.in holds ${describe(value)}, expected strings`)
    const values = [...new Set(list as string[])].sort()
    const key = `${JSON.stringify(name)} in ${JSON.stringify(values)}`
    // A few values are compared in turn; many go through a set.
    if (values.length > 8) {
      const set = new Set(values)
      return keyed(tags => hasOwn.call(tags, name) && set.has(tags[name]), key)
    }
    return keyed(tags => hasOwn.call(tags, name) && values.includes(tags[name]), key)
  }
  if (keys.length === 1 && (keys[0] === 'and' || keys[0] === 'or')) {
    const op = keys[0]
    const list = f[op]
    if (!Array.isArray(list) || list.length === 0) throw new FST_SSE_INVALID_FILTER(`${at}.${op} is ${describe(list)}, expected a non-empty array of filters`)
    const nodes = list.map((item, i) => compile(item, depth + 1, budget, `${at}.${op}[${i}]`))
    const key = `${op}(${nodes.map(node => node.key).join(',')})`
    if (nodes.length === 1) return keyed(nodes[0], key)
    if (nodes.length === 2) {
      const [a, b] = nodes
      return keyed(op === 'and' ? tags => a(tags) && b(tags) : tags => a(tags) || b(tags), key)
    }
    return keyed(op === 'and' ? tags => nodes.every(node => node(tags)) : tags => nodes.some(node => node(tags)), key)
  }
  if (keys.length === 1 && keys[0] === 'not') {
    const inner = compile(f.not, depth + 1, budget, `${at}.not`)
    return keyed(tags => !inner(tags), `not(${inner.key})`)
  }
  throw new FST_SSE_INVALID_FILTER(`${at} has the keys ${JSON.stringify(keys)}: expected { tag, eq }, { tag, in }, { and }, { or } or { not }`)
}

function keyed (test: (tags: Tags) => boolean, key: string): Node {
  const node = test as Node
  node.key = key
  return node
}

function checkName (name: unknown, Err: new (message: string) => Error, at = 'a tag name'): string {
  if (typeof name !== 'string' || name === '' || name.length > MAX_TAG_NAME) {
    throw new Err(`${at} is ${describe(name)}, expected a string of 1 to ${MAX_TAG_NAME} characters`)
  }
  return name
}

function isPlainObject (value: unknown): value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return value === '' ? 'an empty string' : `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`
}
