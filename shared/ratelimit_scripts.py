"""The rate limiter's Lua scripts (``shared.ratelimit``): what each window keeps in Redis, and
how one admission or settlement reads and changes it in one atomic step.

Each script's keys, arguments and answer are listed above it; ``shared.ratelimit``
builds the arguments and reads the answers.
"""

KEY_SLACK_MS = 60_000  # a log's key outlives its last admission's window by this much
BUCKETS_PER_DAY = 288  # a day's window counts in 5-minute buckets (see ADMIT)
PENDING_SWEEP = 1024  # a bucketed window's counts past this many fields are swept of unsettled admissions
BUCKETS = "buckets"  # a settlement's kind for a bucketed window's requests limit

# The admission. KEYS: per window, its log and its amounts (token amounts; a bucketed window's
# counts), then the handed write's keys. ARGV: the reservation id, the number of windows n,
# per window: its length in ms, its requests limit and its tokens limit (-1: none), the
# tokens asked and its bucket in ms (0: an exact log); then the handed write's ARGV. Answers
# {1, per window: requests used, tokens used, ms until its oldest admission leaves it}
# when admitted; {0, window, kind (1 requests, 2 tokens), ms until the request would fit
# (-1: never), per window: requests used, tokens used} when a limit refuses; {2, the
# write's answer} when the handed write refuses (before any allowance is looked at: its
# refusal comes first).
#
# An exact window's log holds one entry per admission (its id, scored by its time), and a
# token limit's amounts each admission's tokens by id, with their sum (``_sum``). A
# bucketed window (a day's: ``BUCKETS_PER_DAY``) holds one entry per bucket instead
# (its start, scored by it), the amounts each bucket's count and their sum, so what it
# stores never grows with what it admits. An admission counts until its whole bucket has
# left the window: a day's window is in effect up to one bucket longer, never shorter, so
# it still never admits more than its limit in any rolling 24 hours. Until its job
# settles, an admission also keeps its bucket in the amounts (``p:<id>``), so a refund
# takes it from the bucket it went into.
ADMIT = """
pcall(redis.replicate_commands)
local SCAN = 16  -- a log's oldest entries looked at in one read: what left the window, and the oldest still in it
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, n = ARGV[1], tonumber(ARGV[2])
local wkeys, wargv = {}, {}
for i = 2 * n + 1, #KEYS do wkeys[#wkeys + 1] = KEYS[i] end
for i = 3 + 5 * n, #ARGV do wargv[#wargv + 1] = ARGV[i] end

local function chunked(cmd, key, items)
  for i = 1, #items, 500 do redis.call(cmd, key, unpack(items, i, math.min(i + 499, #items))) end
end

-- A window as it stands: what left it (to remove), what is in it, its oldest admission.
local windows = {}
for w = 1, n do
  local log, amounts, a = KEYS[2 * w - 1], KEYS[2 * w], 2 + (w - 1) * 5
  local win = {log = log, amounts = amounts, length = tonumber(ARGV[a + 1]), rlimit = tonumber(ARGV[a + 2]),
               tlimit = tonumber(ARGV[a + 3]), cost = tonumber(ARGV[a + 4]), bucket = tonumber(ARGV[a + 5]),
               expired = {}, tokens = 0}
  if win.bucket > 0 then
    win.length = win.length + win.bucket  -- a bucket counts while any of it is in the window
    win.at = now - now % win.bucket  -- the bucket this admission goes into
  end
  local cutoff = now - win.length
  local head = redis.call('ZRANGE', log, 0, SCAN - 1, 'WITHSCORES')
  for j = 1, #head, 2 do
    local score = tonumber(head[j + 1])
    if score > cutoff then win.oldest = score; break end
    win.expired[#win.expired + 1] = head[j]
  end
  if #head < 2 * SCAN then
    win.count = #head / 2 - #win.expired  -- the whole log was read
  else
    if win.oldest == nil then  -- every entry read has left the window: more may have
      win.expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
      local first = redis.call('ZRANGE', log, #win.expired, #win.expired, 'WITHSCORES')
      if #first > 0 then win.oldest = tonumber(first[2]) end
    end
    if win.bucket == 0 then win.count = redis.call('ZCARD', log) - #win.expired end
  end
  if win.bucket > 0 then
    if #head == 0 then
      win.stale, win.count = true, 0  -- no bucket: whatever the counts hold is gone
    else
      local found = redis.call('HMGET', amounts, '_sum', tostring(win.at), unpack(win.expired))
      local sum = tonumber(found[1]) or 0
      for j = 3, #found do sum = sum - (tonumber(found[j]) or 0) end
      win.count, win.current = sum, tonumber(found[2])
    end
  elseif win.tlimit >= 0 then
    if win.count == 0 then
      win.stale = true  -- nothing in the window: whatever the amounts hold is gone
    else
      local amounts_of = redis.call('HMGET', amounts, '_sum', unpack(win.expired))
      local sum = tonumber(amounts_of[1]) or 0
      for j = 2, #amounts_of do sum = sum - (tonumber(amounts_of[j]) or 0) end
      win.tokens = sum
    end
  end
  windows[w] = win
end

-- Remove what left each window; ``sum``: write the amounts' new sum too.
local function tidy(win, sum)
  local counted = win.bucket > 0 or win.tlimit >= 0
  if #win.expired > 0 then
    redis.call('ZREMRANGEBYRANK', win.log, 0, #win.expired - 1)
    if counted and not win.stale then chunked('HDEL', win.amounts, win.expired) end
  end
  if win.stale then
    redis.call('DEL', win.amounts)
  elseif sum and counted and #win.expired > 0 then
    redis.call('HSET', win.amounts, '_sum', win.bucket > 0 and win.count or win.tokens)
  end
end

-- When a refused request would fit: once enough of the window's admissions have left it.
local function retry_ms(win, kind)
  if kind == 1 and win.bucket == 0 then
    local rank = win.count + 1 - win.rlimit - 1
    local entry = redis.call('ZRANGE', win.log, rank, rank, 'WITHSCORES')
    return tonumber(entry[2]) + win.length - now
  end
  local need
  if kind == 1 then
    need = win.count + 1 - win.rlimit  -- admissions, counted by bucket
  else
    if win.cost > win.tlimit then return -1 end  -- the request alone is bigger than the limit
    need = win.tokens + win.cost - win.tlimit
  end
  local freed, start = 0, 0
  while true do
    local entries = redis.call('ZRANGE', win.log, start, start + 99, 'WITHSCORES')
    if #entries == 0 then return win.length end
    local ids = {}
    for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
    local amounts_of = redis.call('HMGET', win.amounts, unpack(ids))
    for j = 1, #ids do
      freed = freed + (tonumber(amounts_of[j]) or 0)
      if freed >= need then return tonumber(entries[2 * j]) + win.length - now end
    end
    start = start + 100
  end
end

-- An admission's bucket, kept for a refund (``p:<id>``), goes when its job settles. Those of
-- admissions never settled (a path that keeps the estimate without saying so, a job lost past
-- its salvage) go once older than a twenty-fourth of the window (an hour of a day): a refund
-- later than that gives nothing back. Looked for when a bucket opens, if the counts have
-- grown past what a scope has in flight.
local function sweep_pending(win)
  if redis.call('HLEN', win.amounts) <= PENDING_SWEEP then return end
  local fields, gone = redis.call('HGETALL', win.amounts), {}
  local oldest = now - (win.length - win.bucket) / 24
  for j = 1, #fields, 2 do
    if string.sub(fields[j], 1, 2) == 'p:' and tonumber(fields[j + 1]) < oldest then
      gone[#gone + 1] = fields[j]
    end
  end
  if #gone > 0 then chunked('HDEL', win.amounts, gone) end
end

local refused
for w = 1, n do
  local win = windows[w]
  if win.rlimit >= 0 and win.count + 1 > win.rlimit then refused = {w, 1}; break end
  if win.tlimit >= 0 and win.tokens + win.cost > win.tlimit then refused = {w, 2}; break end
end
if refused then
  local blocked = write_refusal(wkeys, wargv)
  if blocked then return {2, blocked} end
  local out = {0, refused[1], refused[2], 0}
  for w = 1, n do
    tidy(windows[w], true)
    out[#out + 1] = windows[w].count
    out[#out + 1] = windows[w].tokens
  end
  out[4] = retry_ms(windows[refused[1]], refused[2])
  return out
end
local blocked = write(wkeys, wargv)
if blocked then return {2, blocked} end
local out = {1}
for w = 1, n do
  local win = windows[w]
  tidy(win, false)
  if win.bucket > 0 then
    local member = tostring(win.at)
    if win.current == nil then  -- a new bucket: the keys last until it has left the window
      redis.call('ZADD', win.log, win.at, member)
      redis.call('PEXPIRE', win.log, win.at + win.length - now + KEY_SLACK_MS)
      sweep_pending(win)
    end
    redis.call('HSET', win.amounts, member, (win.current or 0) + 1, '_sum', win.count + 1, 'p:' .. id, member)
    if win.current == nil then
      redis.call('PEXPIRE', win.amounts, win.at + win.length - now + KEY_SLACK_MS)
    end
  else
    redis.call('ZADD', win.log, now, id)
    redis.call('PEXPIRE', win.log, win.length + KEY_SLACK_MS)
    if win.tlimit >= 0 then
      redis.call('HSET', win.amounts, id, win.cost, '_sum', win.tokens + win.cost)
      redis.call('PEXPIRE', win.amounts, win.length + KEY_SLACK_MS)
    end
  end
  out[#out + 1] = win.count + 1
  out[#out + 1] = win.tokens + win.cost
  out[#out + 1] = (win.oldest or win.at or now) + win.length - now
end
return out
""".replace("KEY_SLACK_MS", str(KEY_SLACK_MS)).replace("PENDING_SWEEP", str(PENDING_SWEEP))

# What an admission with nothing handed to it writes: nothing.
NO_WRITE = """
local function write_refusal(keys, argv) end
local function write(keys, argv) end
"""

# The settlement. KEYS: per limit, its log and its amounts. ARGV: the reservation id, then
# per limit its kind (requests, tokens, or buckets: a bucketed window's requests) and its new
# cost (-1: remove the admission entirely).
SETTLE = """
local id, removed = ARGV[1], {}
for i = 1, #KEYS / 2 do
  local log, amounts, kind, cost = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if kind == 'buckets' then
    -- The admission's bucket, kept until now for a refund; none once it was settled or swept.
    local at = cost < 0 and redis.call('HGET', amounts, 'p:' .. id)
    if at then
      local found = redis.call('HMGET', amounts, at, '_sum')
      if found[1] then  -- the bucket is still in the window: the request is given back
        redis.call('HSET', amounts, at, tonumber(found[1]) - 1, '_sum', (tonumber(found[2]) or 1) - 1)
      end
    end
    redis.call('HDEL', amounts, 'p:' .. id)
  elseif kind == 'tokens' then
    local found = redis.call('HMGET', amounts, id, '_sum')
    local old = tonumber(found[1])
    if old then  -- still in its window (a settlement after the window has nothing to correct)
      local sum = tonumber(found[2]) or 0
      if cost < 0 then
        redis.call('HDEL', amounts, id)
        redis.call('HSET', amounts, '_sum', sum - old)
      else
        redis.call('HSET', amounts, id, cost, '_sum', sum - old + cost)
      end
    end
  end
  if cost < 0 and kind ~= 'buckets' and not removed[log] then
    redis.call('ZREM', log, id)
    removed[log] = true
  end
end
return 1
"""
