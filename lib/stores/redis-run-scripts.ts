// The Lua side of the Redis run store. Every key a script touches is passed in KEYS and shares the store's hash tag.
// Times are Redis's clock in ms, written with %.0f (tostring() would give 1.7e+12).
//
// Keys: <prefix>:r:<key>   hash { id: the run's id, state: running or how it ended, n: frames kept, bytes, proto,
//                          lease: ms until which the owner's claim holds, ttl: ms an ended run is kept, cancel: '1' once
//                          asked, ib and ia: the final frame of an interrupted run before and after its id line }
//       <prefix>:rf:<key>  list: the run's frames, frame i at list index i - 1
// Channels: <prefix>:r:<key> (the hash's name): "f\n<id>\n<first>\n<ended 0|1>\n<byte length,…>\n<frames>" for each
// append, for the readers; <prefix>:rx:<key>: "c" for a cancel, for the owner. Indices are dense, so a reader knows
// from the first index alone whether it missed one.

const COMMON = `
local function fmt (n) return string.format('%.0f', n) end

local function now ()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function publish (hash, id, first, ended, frames, from, to)
  local lens = {}
  for j = from, to do lens[#lens + 1] = #frames[j] end
  redis.call('PUBLISH', hash, 'f\\n' .. id .. '\\n' .. first .. '\\n' .. ended .. '\\n' .. table.concat(lens, ',') .. '\\n' .. table.concat(frames, '', from, to))
end

-- The owner's lease ran out: the run ends as interrupted, with the final frame its owner left for that.
local function interrupt (hash, list)
  local h = redis.call('HMGET', hash, 'id', 'n', 'ib', 'ia', 'ttl')
  local n = tonumber(h[2]) + 1
  local frame = h[3] .. 'id: ' .. h[1] .. '.' .. n .. '\\n' .. h[4]
  redis.call('RPUSH', list, frame)
  redis.call('HINCRBY', hash, 'bytes', #frame)
  redis.call('HSET', hash, 'n', n, 'state', 'interrupted')
  redis.call('PEXPIRE', hash, h[5])
  redis.call('PEXPIRE', list, h[5])
  publish(hash, h[1], n, 1, { frame }, 1, 1)
end

-- The run's fields, after ending it if its owner's lease ran out.
local function current (hash, list, nowMs)
  local h = redis.call('HMGET', hash, 'id', 'state', 'n', 'bytes', 'proto', 'lease')
  if h[1] and h[2] == 'running' and tonumber(h[6]) < nowMs then
    interrupt(hash, list)
    h = redis.call('HMGET', hash, 'id', 'state', 'n', 'bytes', 'proto', 'lease')
  end
  return h
end
`

/**
 * KEYS: hash, list. ARGV: id, proto, ib, ia, lease, ttl, replace ('1' or '0'). Returns { 1 when claimed else 0, id,
 * state, n, bytes, proto } of the run that holds the key afterwards.
 */
export const CLAIM = `${COMMON}
local hash, list = KEYS[1], KEYS[2]
local nowMs = now()
local h = current(hash, list, nowMs)
if h[1] and (h[2] == 'running' or (h[2] ~= 'interrupted' and ARGV[7] ~= '1')) then
  return { 0, h[1], h[2], h[3], h[4], h[5] }
end
redis.call('DEL', hash, list)
redis.call('HSET', hash, 'id', ARGV[1], 'state', 'running', 'n', 0, 'bytes', 0, 'proto', ARGV[2], 'ib', ARGV[3], 'ia', ARGV[4],
  'lease', fmt(nowMs + tonumber(ARGV[5])), 'ttl', ARGV[6])
redis.call('PEXPIRE', hash, tonumber(ARGV[5]) + tonumber(ARGV[6]))
return { 1, ARGV[1], 'running', '0', '0', ARGV[2] }
`

/**
 * Appends for several runs (a tick's). KEYS: hash and list per run. ARGV: lease, then per run id, first, end ('' or
 * how it ended), count, then its count frames. Returns per run 'ok', 'cancelled' (asked to stop) or 'lost' (the key
 * holds another run, or this one no longer runs): a lost owner's frames are not kept. An append that is already
 * stored (sent again after its answer was lost) answers as if stored now.
 */
export const APPEND = `${COMMON}
local nowMs = now()
local lease = tonumber(ARGV[1])
local leaseUntil = fmt(nowMs + lease)
local results = {}
local a = 2
for i = 1, #KEYS, 2 do
  local hash, list = KEYS[i], KEYS[i + 1]
  -- A number becomes text through sprintf, the dearest step here after the calls themselves: the first index is
  -- passed on as the text it came as, the lease's end is made once a call, and a one-frame append (the usual one)
  -- is published without the tables of the general case (1.4 of 5.7 us of Redis CPU per run-append saved).
  local id, firstText, ending, count = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local first = tonumber(firstText)
  local from, to = a + 4, a + 3 + count
  a = to + 1
  local h = redis.call('HMGET', hash, 'id', 'state', 'n', 'cancel', 'ttl', 'bytes')
  local n = tonumber(h[3])
  if h[1] == id and n >= first - 1 + count and h[2] == (ending == '' and 'running' or ending) then
    results[#results + 1] = h[4] == '1' and 'cancelled' or 'ok'
  elseif h[1] ~= id or h[2] ~= 'running' or n ~= first - 1 then
    results[#results + 1] = 'lost'
  else
    local bytes = tonumber(h[6])
    for j = from, to do bytes = bytes + #ARGV[j] end
    redis.call('RPUSH', list, unpack(ARGV, from, to))
    local ttl = tonumber(h[5])
    if ending ~= '' then
      redis.call('HSET', hash, 'n', first - 1 + count, 'bytes', bytes, 'state', ending)
      redis.call('PEXPIRE', hash, ttl)
      redis.call('PEXPIRE', list, ttl)
    else
      -- The keys' expiry moves with the renewals (every third of the lease); the list gets its first one here.
      redis.call('HSET', hash, 'n', count == 1 and firstText or first - 1 + count, 'bytes', bytes, 'lease', leaseUntil)
      if first == 1 then redis.call('PEXPIRE', list, lease + ttl) end
    end
    local ended = ending ~= '' and '1' or '0'
    if count == 1 then
      redis.call('PUBLISH', hash, 'f\\n' .. id .. '\\n' .. firstText .. '\\n' .. ended .. '\\n' .. #ARGV[from] .. '\\n' .. ARGV[from])
    else
      publish(hash, id, firstText, ended, ARGV, from, to)
    end
    results[#results + 1] = h[4] == '1' and 'cancelled' or 'ok'
  end
end
return results
`

/** KEYS: hash and list per run. ARGV: lease, then the runs' ids. Returns per run 'ok', 'cancelled' or 'lost'. */
export const RENEW = `${COMMON}
local nowMs = now()
local lease = tonumber(ARGV[1])
local results = {}
for i = 1, #KEYS, 2 do
  local hash, list = KEYS[i], KEYS[i + 1]
  local h = redis.call('HMGET', hash, 'id', 'state', 'cancel', 'ttl')
  if h[1] ~= ARGV[(i + 1) / 2 + 1] or h[2] ~= 'running' then
    results[#results + 1] = 'lost'
  else
    redis.call('HSET', hash, 'lease', fmt(nowMs + lease))
    redis.call('PEXPIRE', hash, lease + tonumber(h[4]))
    redis.call('PEXPIRE', list, lease + tonumber(h[4]))
    results[#results + 1] = h[3] == '1' and 'cancelled' or 'ok'
  end
end
return results
`

/** KEYS: hash, list. Returns { id, state, n, bytes, proto }, or nil when there is no run; a run past its lease is ended first. */
export const GET = `${COMMON}
local h = current(KEYS[1], KEYS[2], now())
if not h[1] then return nil end
return { h[1], h[2], h[3], h[4], h[5] }
`

/** KEYS: hash, list. ARGV: id, after, limit. Returns { state, n, frames after `after` }, or nil when the key holds another run. */
export const READ = `
local h = redis.call('HMGET', KEYS[1], 'id', 'state', 'n')
if h[1] ~= ARGV[1] then return nil end
local after = tonumber(ARGV[2])
return { h[2], h[3], redis.call('LRANGE', KEYS[2], after, after + tonumber(ARGV[3]) - 1) }
`

/** KEYS: hash. ARGV: the cancel channel. Returns 1 when the run was running (its owner is told on the channel), else 0. */
export const CANCEL = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1')
redis.call('PUBLISH', ARGV[1], 'c')
return 1
`

/** KEYS: hash, list. Returns 1 when an ended run was deleted, else 0 (none, or running). */
export const DELETE = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'running' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`

/** KEYS: hash and list per run. Ends as interrupted every running run whose owner's lease ran out; returns how many. */
export const SWEEP = `${COMMON}
local nowMs = now()
local ended = 0
for i = 1, #KEYS, 2 do
  local h = redis.call('HMGET', KEYS[i], 'state', 'lease')
  if h[1] == 'running' and tonumber(h[2]) < nowMs then
    interrupt(KEYS[i], KEYS[i + 1])
    ended = ended + 1
  end
end
return ended
`
