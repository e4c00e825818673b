"""The Lua scripts of ``RedisBalanceLedger``: each runs atomically in Redis. Money is in integer units.

Keys of one account (``{p}`` the configured prefix, ``a`` the account id):

- ``{p}bal:a`` hash: ``credit``, ``charged``, ``reserved`` (see ``redis_balances.py``);
- ``{p}bal:a:res`` hash: reservation id -> units held, or ``t`` (a tombstone: settled or released);
- ``{p}bal:a:exp`` zset: reservation id -> deadline (ms, Redis ``TIME``); a tombstone's score is when it
  may be forgotten;
- ``{p}bal:a:fly`` hash: replica -> its settled-but-unflushed units for the account, and
  ``replica:n`` -> the sequence number of that value (a newer value is never overwritten by an older one).

and of the deployment: ``{p}bal-replicas`` zset (replica -> last heartbeat, ms) and ``{p}bal-accounts``
zset (account -> its last reservation, ms: the accounts reconciliation looks at).

Every script that touches a reservation first *sweeps*: it releases up to 100 reservations past their
deadline, so money nobody holds any more (a killed replica, a call that timed out) comes back.
"""

from __future__ import annotations

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function sweep(bal, res, exp)
  local gone = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 100)
  if #gone == 0 then return end
  for _, id in ipairs(gone) do
    local u = redis.call('HGET', res, id)
    if u and u ~= 't' then redis.call('HINCRBY', bal, 'reserved', '-' .. u) end
  end
  redis.call('HDEL', res, unpack(gone))
  redis.call('ZREM', exp, unpack(gone))
end
local function tombstone(res, exp, id, ms)
  redis.call('HSET', res, id, 't')
  redis.call('ZADD', exp, now + ms, id)
end
local function set_in_flight(fly, replica, seq, units)
  local n = redis.call('HGET', fly, replica .. ':n')
  if not n or tonumber(n) < tonumber(seq) then
    redis.call('HSET', fly, replica, units, replica .. ':n', seq)
  end
end
"""

# KEYS: bal, res, exp, accounts. ARGV: amount, grace, id, hold (ms), account id.
# Returns {1 admitted / 0 refused / -1 no hash yet / 2 id already released, available before}.
RESERVE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
redis.call('ZADD', KEYS[4], now, ARGV[5])
sweep(KEYS[1], KEYS[2], KEYS[3])
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return {2, 0} end
local v = redis.call('HMGET', KEYS[1], 'credit', 'charged', 'reserved')
local available = tonumber(v[1]) - tonumber(v[2]) - tonumber(v[3])
local amount, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
if available < -grace or available - amount < -grace then return {0, available} end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
return {1, available}
"""
)

# KEYS: bal, res, exp, fly. ARGV: id, cost, cap (1/0), grace, replica, seq, in-flight units, tombstone ms.
# Releases the reservation if it is still held, charges the cost (capped, with cap=1, so that available
# stays >= -grace), records the replica's in-flight units. Returns {1, charged} or {2, 0}: settled before
# (a retried call). A reservation that expired before its settle came is charged all the same: the usage
# row carries the cost.
SETTLE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0} end
sweep(KEYS[1], KEYS[2], KEYS[3])
local u = redis.call('HGET', KEYS[2], ARGV[1])
if u == 't' then return {2, 0} end
if u then redis.call('HINCRBY', KEYS[1], 'reserved', '-' .. u) end
tombstone(KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[8]))
local cost = ARGV[2]
if ARGV[3] == '1' then
  local v = redis.call('HMGET', KEYS[1], 'credit', 'charged', 'reserved')
  local room = tonumber(v[1]) - tonumber(v[2]) - tonumber(v[3]) + tonumber(ARGV[4])
  if room < tonumber(cost) then cost = string.format('%d', math.max(math.floor(room), 0)) end
end
redis.call('HINCRBY', KEYS[1], 'charged', cost)
set_in_flight(KEYS[4], ARGV[5], ARGV[6], ARGV[7])
return {1, cost}
"""
)

# KEYS: bal, res, exp. ARGV: id, tombstone ms. A reservation whose reserve call failed or was cancelled
# on the replica: released if it was made, and kept from being made if that call is still on its way.
RELEASE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local u = redis.call('HGET', KEYS[2], ARGV[1])
if u == 't' then return 0 end
if u then redis.call('HINCRBY', KEYS[1], 'reserved', '-' .. u) end
tombstone(KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
return 1
"""
)

# KEYS: bal, res, fly, accounts. ARGV: credit, spent, account id. Creates the hash unless another replica
# did first: charged = spent + every replica's in-flight units, reserved = the reservations still held.
INIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'credit', ARGV[1], 'charged', ARGV[2], 'reserved', 0)
  local f = redis.call('HGETALL', KEYS[3])
  for i = 1, #f, 2 do
    if string.sub(f[i], -2) ~= ':n' then redis.call('HINCRBY', KEYS[1], 'charged', f[i + 1]) end
  end
  for _, u in ipairs(redis.call('HVALS', KEYS[2])) do
    if u ~= 't' then redis.call('HINCRBY', KEYS[1], 'reserved', u) end
  end
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[4], tonumber(t[1]) * 1000, ARGV[3])
return 1
"""

# KEYS: bal. ARGV: credit.
CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'credit', ARGV[1]) end
return 1
"""

# KEYS: replicas, then the fly hash of each account listed. ARGV: replica, seq, then each account's
# in-flight units. The replica's heartbeat: it is alive, and this is what it has settled but not flushed.
HEARTBEAT = (
    _PRELUDE
    + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
for i = 2, #KEYS do set_in_flight(KEYS[i], ARGV[1], ARGV[2], ARGV[i + 1]) end
return 1
"""
)

# KEYS: bal, res, exp, fly, replicas. ARGV: ms after which a silent replica counts as gone.
# Reconciliation's first read: {1, charged, the in-flight units of live replicas} (or {0} with no hash);
# the in-flight entries of replicas gone silent are dropped, and ``reserved`` is set to the sum of the
# reservations actually held (healing any drift, e.g. a hash from before reservations had entries).
SNAPSHOT = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '0', 0} end
sweep(KEYS[1], KEYS[2], KEYS[3])
local held = 0
for _, u in ipairs(redis.call('HVALS', KEYS[2])) do
  if u ~= 't' then held = held + tonumber(u) end
end
redis.call('HSET', KEYS[1], 'reserved', string.format('%d', held))
local total = 0
local f = redis.call('HGETALL', KEYS[4])
for i = 1, #f, 2 do
  local name = f[i]
  if string.sub(name, -2) ~= ':n' then
    local seen = redis.call('ZSCORE', KEYS[5], name)
    if seen and tonumber(seen) >= now - tonumber(ARGV[1]) then
      total = total + tonumber(f[i + 1])
    else
      redis.call('HDEL', KEYS[4], name, name .. ':n')
    end
  end
end
return {1, redis.call('HGET', KEYS[1], 'charged'), total}
"""
)

# KEYS: bal. ARGV: correction to charged, credit.
CORRECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'charged', ARGV[1])
redis.call('HSET', KEYS[1], 'credit', ARGV[2])
return 1
"""
