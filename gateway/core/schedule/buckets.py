"""The Lua of the Redis schedule: each partition's entries in small sorted sets ("buckets") of at most
:data:`BUCKET_SIZE` entries, found through an index, so that Redis keeps each bucket in its compact
listpack encoding (about 45 bytes an entry, bucket included, where one big sorted set costs about 125).

Layout, per partition P (every key carries the hash tag ``{timers:P}``, so one script stays in one slot):

- the index ``<prefix>:{timers:P}:due``: a sorted set of bucket ids, scored by each bucket's lower bound;
- bucket ``<prefix>:{timers:P}:b:<id>``: a sorted set of entries (member: conversation and timer, score:
  due time in ms).

A bucket holds the entries due from its lower bound up to the next bucket's; the first bucket also holds
whatever falls below its bound (its bound moves down to the lowest). A bucket that grows past the limit
splits at a change of due time near its middle, or just before the new entry when that one came last
(timers mostly arrive in due order: the buckets behind stay full); never between two entries due at the
same millisecond, so an entry's bucket is always found from its due time. The upper part becomes a new
bucket. A bucket
left empty is deleted with its index entry, so an empty partition leaves no key behind.

The bucket keys are named in the scripts rather than passed as KEYS: they are only known once the index
has been read, and they share the index's hash tag, so a Redis Cluster (7.0 and later) runs them on the
index's node, in its slot.
"""

from __future__ import annotations

BUCKET_SIZE = 120  # below Redis's zset-max-listpack-entries (128 by default)
GRACE_MS = 86_400_000  # how long a schedule key outlives the due time of its last entry

# ARGV[1]: the bucket key prefix (``<prefix>:{timers:P}:b:``). Helpers shared by the scripts.
_COMMON = """
local index, prefix = KEYS[1], ARGV[1]
local function bucket(id)
  return prefix .. id
end
local function owner(due)
  local found = redis.call('ZREVRANGEBYSCORE', index, due, '-inf', 'LIMIT', 0, 1)
  if found[1] then
    return found[1]
  end
  return redis.call('ZRANGE', index, 0, 0)[1]
end
"""

# ARGV: prefix, bucket size, grace ms, #entries to add, then (due, member) to add, then (due, member) to
# remove.
CHANGE = (
    _COMMON
    + """
local size, grace, made = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function keep_until(key, due)  -- a key outlives its last entry's due time (or now) by the grace
  local at = math.max(tonumber(due), now) + grace
  local expires = redis.call('PEXPIRETIME', key)
  if expires == -1 or expires < at then
    redis.call('PEXPIREAT', key, at)
  end
end
local function new_id()
  local clock = redis.call('TIME')
  made = made + 1
  return clock[1] .. clock[2] .. '.' .. made
end
local function zadd_all(key, pairs)
  for first = 1, #pairs, 1000 do
    redis.call('ZADD', key, unpack(pairs, first, math.min(first + 999, #pairs)))
  end
end
local function split(id, member)
  local key = bucket(id)
  local n = redis.call('ZCARD', key)
  if n <= size then
    return
  end
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local function score(rank)
    return all[2 * rank + 2]
  end
  local at
  local middle = math.floor(n / 2)
  if all[2 * n - 1] == member then
    middle = n - 1  -- appended at the end (timers mostly come in due order): keep this bucket full
  end
  for rank = middle, n - 1 do
    if score(rank) ~= score(rank - 1) then
      at = rank
      break
    end
  end
  if not at then
    for rank = middle - 1, 1, -1 do
      if score(rank) ~= score(rank - 1) then
        at = rank
        break
      end
    end
  end
  if not at then
    return  -- every entry due at the same millisecond: the bucket grows instead
  end
  local moved = {}
  for rank = at, n - 1 do
    moved[#moved + 1] = score(rank)
    moved[#moved + 1] = all[2 * rank + 1]
  end
  local upper = new_id()
  zadd_all(bucket(upper), moved)
  keep_until(bucket(upper), score(n - 1))
  redis.call('ZREMRANGEBYRANK', key, at, -1)
  redis.call('ZADD', index, score(at), upper)
end
local function add(due, member)
  local id = owner(due)
  if not id then
    id = new_id()
    redis.call('ZADD', index, due, id)
  elseif tonumber(due) < tonumber(redis.call('ZSCORE', index, id)) then
    redis.call('ZADD', index, due, id)  -- below the first bucket: it reaches down
  end
  if redis.call('ZADD', bucket(id), due, member) == 1 then
    keep_until(bucket(id), due)
    keep_until(index, due)
    split(id, member)
  end
end
local function remove(due, member)
  local id = owner(due)
  if id and redis.call('ZREM', bucket(id), member) == 1 and redis.call('EXISTS', bucket(id)) == 0 then
    redis.call('ZREM', index, id)
  end
end
local adds = tonumber(ARGV[4])
for i = 5, 4 + 2 * adds, 2 do
  add(ARGV[i], ARGV[i + 1])
end
for i = 5 + 2 * adds, #ARGV, 2 do
  remove(ARGV[i], ARGV[i + 1])
end
return 1
"""
)

# ARGV: prefix, now (ms), limit. Returns {member, due, ...} due, earliest first, and the due time of the
# next entry after them (or false).
DUE = (
    _COMMON
    + """
local now, limit = ARGV[2], tonumber(ARGV[3])
local found = {}
local rank = 0
while true do
  local id = redis.call('ZRANGE', index, rank, rank)[1]
  if not id then
    return {found, false}
  end
  if redis.call('EXISTS', bucket(id)) == 0 then
    redis.call('ZREM', index, id)  -- it expired (no poller for that long): forget it; the next takes its rank
  else
    local want = limit - #found / 2
    if want <= 0 then
      return {found, redis.call('ZRANGE', bucket(id), 0, 0, 'WITHSCORES')[2]}
    end
    local got = redis.call('ZRANGEBYSCORE', bucket(id), '-inf', now, 'WITHSCORES', 'LIMIT', 0, want)
    for i = 1, #got do
      found[#found + 1] = got[i]
    end
    local rest = redis.call('ZRANGE', bucket(id), #got / 2, #got / 2, 'WITHSCORES')
    if rest[2] then
      return {found, rest[2]}
    end
    rank = rank + 1
  end
end
"""
)

# ARGV: prefix. Returns how many entries the partition holds.
COUNT = (
    _COMMON
    + """
local total = 0
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  total = total + redis.call('ZCARD', bucket(id))
end
return total
"""
)
