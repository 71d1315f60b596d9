// The Lua side of the Redis store. Every key a script touches is passed in KEYS and shares the store's hash tag, so
// the scripts run on a Redis Cluster too. Positions are integers below 2^53, exact in Lua's doubles; they are
// written with %.0f, never tostring() (which would give 1.7e+15).
//
// Keys: <prefix>:meta   hash { head: newest position, first: the epoch's first position }
//       <prefix>:clock  sorted set: member a position, score the Redis time (ms) it was assigned; one per `step`
//       <prefix>:t:<topic>  stream: entry id "<position>-0", fields t (ms), f (epoch), d (data), e? (event), i? (id)
//       <prefix>:id:<id>    a publisher's id -> its position, for as long as the history keeps events

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
local function epoch (meta, clock, floor, ttl)
  local m = redis.call('HMGET', meta, 'head', 'first')
  local head, first = tonumber(m[1]), tonumber(m[2])
  if head == nil or first == nil or head < floor then
    local _, us = now()
    first = math.max(us, floor + 1, (head or 0) + 1)
    head = first - 1
    redis.call('HSET', meta, 'head', fmt(head), 'first', fmt(first))
    redis.call('DEL', clock)
  end
  redis.call('PEXPIRE', meta, ttl)
  return head, first
end

-- Positions at or below this may belong to a topic whose key expired (no publish for ttl): the last one before the
-- oldest checkpoint inside the ttl window; with no checkpoint there, the head.
local function forgotten (clock, nowMs, ttl, head)
  local c = redis.call('ZRANGEBYSCORE', clock, nowMs - ttl, '+inf', 'LIMIT', 0, 1)
  if #c == 0 then return head end
  return tonumber(c[1]) - 1
end

-- The stream's last id and the newest position it dropped (kept by Redis as max-deleted-entry-id).
local function info (key)
  local r = redis.call('XINFO', 'STREAM', key)
  local last, deleted
  for i = 1, #r, 2 do
    if r[i] == 'last-generated-id' then last = r[i + 1] elseif r[i] == 'max-deleted-entry-id' then deleted = r[i + 1] end
  end
  return last, seqOf(deleted)
end

-- Drops what is over the count bound or older than the age bound (entries are in time order: field t comes first),
-- and records the newest dropped position, which XTRIM alone does not.
local function trim (key, size, cutoff)
  local dropped
  local len = redis.call('XLEN', key)
  if len > size then
    local old = redis.call('XRANGE', key, '-', '+', 'COUNT', len - size)
    dropped = old[#old][1]
  end
  local more = true
  while more do
    local page = redis.call('XRANGE', key, dropped and ('(' .. dropped) or '-', '+', 'COUNT', 64)
    more = #page == 64
    for _, entry in ipairs(page) do
      if tonumber(entry[2][2]) > cutoff then more = false break end
      dropped = entry[1]
    end
  end
  if dropped == nil then return end
  redis.call('XTRIM', key, 'MINID', fmt(seqOf(dropped) + 1) .. '-0')
  local last, deleted = info(key)
  if seqOf(dropped) > deleted then redis.call('XSETID', key, last, 'MAXDELETEDID', dropped) end
end
`

/**
 * KEYS: meta, clock, topic stream, publisher id key. ARGV: floor, historySize, historyAge, ttl, step, data, event
 * ('' for none), publisher id ('' for none). Returns { position, epoch }, or nil when the publisher id is taken.
 */
export const APPEND = `${COMMON}
local meta, clock, stream, idKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local floor, size, age, ttl, step = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local data, event, id = ARGV[6], ARGV[7], ARGV[8]
local nowMs = now()
local head, first = epoch(meta, clock, floor, ttl)
if id ~= '' and redis.call('EXISTS', idKey) == 1 then return false end
local seq = head + 1
redis.call('HSET', meta, 'head', fmt(seq))
local fresh = redis.call('EXISTS', stream) == 0
local lost = fresh and forgotten(clock, nowMs, ttl, head) or 0
local last = redis.call('ZRANGE', clock, -1, -1, 'WITHSCORES')
if #last == 0 or nowMs - tonumber(last[2]) >= step then
  redis.call('ZADD', clock, nowMs, fmt(seq))
  redis.call('ZREMRANGEBYSCORE', clock, '-inf', '(' .. fmt(nowMs - ttl - step))
end
redis.call('PEXPIRE', clock, ttl)
local fields = { 't', fmt(nowMs), 'f', fmt(first), 'd', data }
if event ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = event end
if id ~= '' then
  fields[#fields + 1] = 'i'; fields[#fields + 1] = id
  redis.call('SET', idKey, fmt(seq), 'PX', age)
end
redis.call('XADD', stream, fmt(seq) .. '-0', unpack(fields))
-- A new key may replace one that expired: what it held is below the forgotten position.
if lost > 0 then redis.call('XSETID', stream, fmt(seq) .. '-0', 'MAXDELETEDID', fmt(lost) .. '-0') end
trim(stream, size, nowMs - age)
redis.call('PEXPIRE', stream, ttl)
return { fmt(seq), fmt(first) }
`

/**
 * KEYS: meta, clock, publisher id key, then one stream per topic. ARGV: floor, historySize, historyAge, ttl,
 * publisher id ('' for none). Trims the streams, then returns { head, epoch, position of the publisher id or '',
 * then per topic the newest position it lost }. With no topic it only reads (and if need be starts) the epoch.
 */
export const HORIZON = `${COMMON}
local meta, clock, idKey = KEYS[1], KEYS[2], KEYS[3]
local floor, size, age, ttl, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local nowMs = now()
local head, first = epoch(meta, clock, floor, ttl)
local result = { fmt(head), fmt(first), id ~= '' and (redis.call('GET', idKey) or '') or '' }
local lost = forgotten(clock, nowMs, ttl, head)
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    trim(KEYS[i], size, nowMs - age)
    local _, deleted = info(KEYS[i])
    result[#result + 1] = fmt(deleted)
  else
    result[#result + 1] = fmt(lost)
  end
end
return result
`
