// The Lua side of the Redis store. Every key a script touches is passed in KEYS and shares the store's hash tag, so
// the scripts run on a Redis Cluster too. Positions are integers below 2^53, exact in Lua's doubles; they are
// written with %.0f, never tostring() (which would give 1.7e+15).
//
// Keys: <prefix>:meta   hash { head: newest position, first: the epoch's first position, tick: ms of the newest
//                       clock checkpoint }
//       <prefix>:clock  sorted set: member a position, score the Redis time (ms) it was assigned; one per `step`
//       <prefix>:t:<topic>  stream: entry id "<position>-0", fields m ("<ms>:<link>": when it was appended, and the
//                       position of the topic's entry before it, or for a topic's first entry the newest position it
//                       may have lost), d (data), e? (event), i? (id), g? (tags, as JSON)
//       <prefix>:l:<topic>  "<position>:<ms>": the topic's newest position (what its next entry links to) and when
//       <prefix>:id:<id>    a publisher's id -> its position, for as long as the history keeps events
// Channel: <prefix>:c:<topic>  each append is published there for the instances' live readers (see LIVE_MESSAGE).
//
// The `p` link is what makes trimming cheap and gaps visible: an append trims with `MAXLEN ~` (whole nodes, no
// scan), and whoever reads after a position knows it missed nothing when the first entry it finds links back to at
// or below that position.

const COMMON = `
local function fmt (n) return string.format('%.0f', n) end

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
 * Appends a batch of events (those published in one tick), each to its topic. KEYS: meta, clock, then per event its
 * topic's stream, its topic's last position, its publisher id key and its topic's channel. ARGV: floor, historySize,
 * historyAge, ttl, step, then per event data, event ('' for none), publisher id ('' for none), tags as JSON ('' for
 * none). Returns the epoch,
 * then per event its position, or '' when its publisher id is taken. The epoch, the clock and the head are dealt
 * with once per batch; per event it is a swap of the topic's last position (SET … GET, no reverse read of the
 * stream), an XADD that trims whole nodes (`MAXLEN ~`, no scan), a TTL and a PUBLISH: constant work whatever the
 * history's length.
 */
export const APPEND = `${COMMON}
local meta, clock = KEYS[1], KEYS[2]
local floor, size, age, ttl, step = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nowMs = now()
local head, first, tick = epoch(meta, clock, floor)
local result = { fmt(first) }
local seq = head
local ms, epochText = fmt(nowMs), fmt(first)
local newTick = tick == nil or nowMs - tick >= step
for i = 0, (#KEYS - 2) / 4 - 1 do
  local stream, lastKey, idKey, channel = KEYS[3 + i * 4], KEYS[4 + i * 4], KEYS[5 + i * 4], KEYS[6 + i * 4]
  local data, event, id, tags = ARGV[6 + i * 4], ARGV[7 + i * 4], ARGV[8 + i * 4], ARGV[9 + i * 4]
  if id ~= '' and redis.call('EXISTS', idKey) == 1 then
    result[#result + 1] = ''
  else
    seq = seq + 1
    local position = fmt(seq)
    if newTick then
      redis.call('ZADD', clock, nowMs, position)
      newTick = false
    end
    local last = redis.call('SET', lastKey, position .. ':' .. ms, 'PX', ttl, 'GET')
    -- A new topic, or one whose keys expired: the live link is 0 (the instances listening got everything), the
    -- stored one says what the topic may have held before.
    local live, prev, refresh = '0', nil, true
    if last then
      local colon = string.find(last, ':', 1, true) or (#last + 1)
      live = string.sub(last, 1, colon - 1)
      prev = live
      -- The stream's TTL is renewed once per step while the topic is busy: it lives ttl to ttl + step past its last publish.
      refresh = math.floor((tonumber(string.sub(last, colon + 1)) or 0) / step) ~= math.floor(nowMs / step)
    else
      prev = fmt(forgotten(clock, nowMs, ttl, seq - 1))
    end
    local fields = { 'm', ms .. ':' .. prev, 'd', data }
    if event ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = event end
    if id ~= '' then
      fields[#fields + 1] = 'i'; fields[#fields + 1] = id
      redis.call('SET', idKey, position, 'PX', age)
    end
    if tags ~= '' then fields[#fields + 1] = 'g'; fields[#fields + 1] = tags end
    redis.call('XADD', stream, 'MAXLEN', '~', size, position .. '-0', unpack(fields))
    if refresh then redis.call('PEXPIRE', stream, ttl + step) end
    redis.call('PUBLISH', channel, position .. '\\n' .. live .. '\\n' .. epochText .. '\\n' .. ms .. '\\n' .. event .. '\\n' .. id .. '\\n' .. tags .. '\\n' .. data)
    result[#result + 1] = position
  end
end
if seq > head then
  if tick == nil or nowMs - tick >= step then
    redis.call('ZREMRANGEBYSCORE', clock, '-inf', '(' .. fmt(nowMs - ttl - step))
    redis.call('PEXPIRE', clock, ttl + step)
    redis.call('HSET', meta, 'head', fmt(seq), 'tick', ms)
    redis.call('PEXPIRE', meta, ttl + step)
  else
    redis.call('HSET', meta, 'head', fmt(seq))
  end
end
return result
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
      -- field m ("<ms>:<link>") comes first
      local colon = string.find(f[2], ':', 1, true)
      if tonumber(string.sub(f[2], colon + 1)) > after or tonumber(string.sub(f[2], 1, colon - 1)) <= cutoff then
        return { result[1], result[2], result[3], 'gap' }
      end
    end
  else
    lost = lost or forgotten(clock, nowMs, ttl, head)
    if lost > after then return { result[1], result[2], result[3], 'gap' } end
  end
  result[#result + 1] = entries
end
return result
`
