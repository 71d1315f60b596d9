// The Lua side of the Redis store. Every key a script touches is passed in KEYS and shares the store's hash tag, so
// the scripts run on a Redis Cluster too. Positions are integers below 2^53, exact in Lua's doubles; they are
// written with %.0f, never tostring() (which would give 1.7e+15).
//
// Keys: <prefix>:meta   hash { head: newest position, first: the epoch's first position, tick: ms of the newest
//                       clock checkpoint }
//       <prefix>:clock  sorted set: member a position, score the Redis time (ms) it was assigned; one per `step`
//       <prefix>:t:<topic>  stream: entry id "<position>-0", fields t (ms), f (epoch), p (the position of the topic's
//                       entry before it, or for a key's first entry the newest position it may have lost), d (data),
//                       e? (event), i? (id)
//       <prefix>:id:<id>    a publisher's id -> its position, for as long as the history keeps events
// Channel: <prefix>:c:<topic>  each append is published there for the instances' live readers (see LIVE_MESSAGE).
//
// The `p` link is what makes trimming cheap and gaps visible: an append trims with `MAXLEN ~` (whole nodes, no
// scan), and whoever reads after a position knows it missed nothing when the first entry it finds links back to at
// or below that position.

const COMMON = `
local function fmt (n) return string.format('%.0f', n) end
local function seqOf (id) return tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1)) end

local function now ()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The epoch: this history's positions start at first. A missing meta (flush, restart without persistence) or a head
-- below a position the caller already saw (failover to a replica that missed writes) starts a new epoch above both,
-- at the clock in microseconds: every id from before is then below first and resyncs.
local function epoch (meta, clock, floor)
  local m = redis.call('HMGET', meta, 'head', 'first', 'tick')
  local head, first, tick = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  if head == nil or first == nil or head < floor then
    local _, us = now()
    first = math.max(us, floor + 1, (head or 0) + 1)
    head = first - 1
    tick = nil
    redis.call('HSET', meta, 'head', fmt(head), 'first', fmt(first))
    redis.call('HDEL', meta, 'tick')
    redis.call('DEL', clock)
  end
  return head, first, tick
end

-- Positions at or below this may belong to a topic whose key expired (no publish for ttl): the last one before the
-- oldest checkpoint inside the ttl window; with no checkpoint there, the head.
local function forgotten (clock, nowMs, ttl, head)
  local c = redis.call('ZRANGEBYSCORE', clock, nowMs - ttl, '+inf', 'LIMIT', 0, 1)
  if #c == 0 then return head end
  return tonumber(c[1]) - 1
end
`

/**
 * KEYS: meta, clock, topic stream, publisher id key, topic channel. ARGV: floor, historySize, historyAge, ttl, step,
 * data, event ('' for none), publisher id ('' for none). Returns { position, epoch }, or nil when the publisher id
 * is taken. Constant work whatever the history's length: no scan, no XINFO.
 */
export const APPEND = `${COMMON}
local meta, clock, stream, idKey, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local floor, size, age, ttl, step = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local data, event, id = ARGV[6], ARGV[7], ARGV[8]
local nowMs = now()
local head, first, tick = epoch(meta, clock, floor)
if id ~= '' and redis.call('EXISTS', idKey) == 1 then return false end
local seq = head + 1
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
-- A new key may replace one that expired: the live link is 0 (the instances listening got everything), the stored
-- one says what the key may have held before.
local live, prev = 0, 0
if #last == 0 then prev = forgotten(clock, nowMs, ttl, head) else prev = seqOf(last[1][1]); live = prev end
if tick == nil or nowMs - tick >= step then
  redis.call('ZADD', clock, nowMs, fmt(seq))
  redis.call('ZREMRANGEBYSCORE', clock, '-inf', '(' .. fmt(nowMs - ttl - step))
  redis.call('PEXPIRE', clock, ttl + step)
  redis.call('HSET', meta, 'head', fmt(seq), 'tick', fmt(nowMs))
  redis.call('PEXPIRE', meta, ttl + step)
else
  redis.call('HSET', meta, 'head', fmt(seq))
end
local fields = { 't', fmt(nowMs), 'f', fmt(first), 'p', fmt(prev), 'd', data }
if event ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = event end
if id ~= '' then
  fields[#fields + 1] = 'i'; fields[#fields + 1] = id
  redis.call('SET', idKey, fmt(seq), 'PX', age)
end
redis.call('XADD', stream, 'MAXLEN', '~', size, fmt(seq) .. '-0', unpack(fields))
redis.call('PEXPIRE', stream, ttl)
redis.call('PUBLISH', channel, fmt(seq) .. '\\n' .. fmt(live) .. '\\n' .. fmt(first) .. '\\n' .. fmt(nowMs) .. '\\n' .. event .. '\\n' .. id .. '\\n' .. data)
return { fmt(seq), fmt(first) }
`

/**
 * KEYS: meta, clock, publisher id key, then one stream per topic. ARGV: floor, historySize, historyAge, ttl,
 * publisher id ('' for none), position to read after ('' for none), page. Returns { head, epoch, the position read
 * after or '', 'gap' or '', then per topic the first page of its entries after that position }. 'gap' (and no pages)
 * when some event after the position is no longer kept: trimmed by count (exactly, here) or older than the age
 * bound. With no topic, or nothing to read after, it only reads (and if need be starts) the epoch.
 */
export const READ = `${COMMON}
local meta, clock, idKey = KEYS[1], KEYS[2], KEYS[3]
local floor, size, age, ttl, id, from, page = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local nowMs = now()
local head, first = epoch(meta, clock, floor)
redis.call('PEXPIRE', meta, ttl)
local after
if from ~= '' then after = tonumber(from) elseif id ~= '' then after = tonumber(redis.call('GET', idKey)) end
local result = { fmt(head), fmt(first), after and fmt(after) or '', '' }
if after == nil or #KEYS == 3 then return result end
if after > head or after < first - 1 then result[4] = 'gap' return result end
local cutoff, lost = nowMs - age, nil
for i = 4, #KEYS do
  local entries = {}
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('XTRIM', KEYS[i], 'MAXLEN', size)
    entries = redis.call('XRANGE', KEYS[i], '(' .. fmt(after) .. '-0', '+', 'COUNT', page)
    if #entries > 0 then
      local f = entries[1][2]
      -- fields t, f, p come first, in that order
      if tonumber(f[6]) > after or tonumber(f[2]) <= cutoff then result[4] = 'gap' return { result[1], result[2], result[3], 'gap' } end
    end
  else
    lost = lost or forgotten(clock, nowMs, ttl, head)
    if lost > after then return { result[1], result[2], result[3], 'gap' } end
  end
  result[#result + 1] = entries
end
return result
`
