#pragma once
// The Lua scripts of the Redis store (docs/SCALING.md "Keys"). Each runs atomically on the
// node that owns its room's hash slot: every key of a room carries the room's name as its
// hash tag. Keys of room R:
//   td:{R}      hash   epoch, seq (the latest)
//   td:{R}:x    stream one entry per event, ID "<seq>-0": k kind, t ts, g target, u user,
//                      n name, c cid, o origin (the node's append token)
//   td:{R}:b    hash   seq -> body (apart from the stream, so a delete can erase it)
//   td:{R}:c    hash   user "\n" cid -> seq (the idempotency keys)
//   td:{R}:v    hash   seq -> "1 <edit seqs>" (edited) or "2" (deleted)
//   td:{R}:m    hash   user -> read mark
//   td:{R}:p    hash   node "\n" user -> name (presence)
//   td:{R}:pn   hash   node -> expiry ms (its presence entries go with it)
// and the shard channel td:{R}:e carries its events and signals. Stream field values sit at
// even Lua indexes: k [2], t [4], g [6], u [8], n [10], c [12], o [14].

namespace tongdao::chat::redis {

/**
 * append: KEYS room, stream, bodies, cids, states. ARGV kind, target, user, name, cid, body,
 * keep (events kept, 0 all), maxAgeMs (0 forever), origin, channel, newEpoch.
 * -> {"ok", epoch, seq, ts} | {"dup", epoch, seq, ts} | {"notfound"} | {"forbidden"}; with
 * channel "" the event is not published but returned, for the node to publish:
 * {"ok", epoch, seq, ts, event}
 */
inline constexpr const char* appendScript = R"lua(
local room, stream, bodies, cids, states = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local kind, target, user, name, cid, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local keep, maxAge, origin, channel = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
local epoch = redis.call('HGET', room, 'epoch')
if not epoch then
  -- A room never seen, or one whose data was lost: a new history under a new epoch.
  epoch = ARGV[11]
  redis.call('HSET', room, 'epoch', epoch, 'seq', 0)
end
if cid ~= '' then
  local first = redis.call('HGET', cids, user .. '\n' .. cid)
  if first then
    local e = redis.call('XRANGE', stream, first .. '-0', first .. '-0')[1]
    return {'dup', epoch, first, e and e[2][4] or '0'}
  end
end
if kind ~= '0' then
  local e = redis.call('XRANGE', stream, target .. '-0', target .. '-0')[1]
  if not e or e[2][2] ~= '0' then return {'notfound'} end
  local st = redis.call('HGET', states, target)
  if st and string.sub(st, 1, 1) == '2' then return {'notfound'} end
  if e[2][8] ~= user then return {'forbidden'} end
end
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
-- What retention removes takes its body, its state and its idempotency key along.
local function drop(e)
  local seq = string.match(e[1], '^(%d+)')
  redis.call('HDEL', bodies, seq)
  redis.call('HDEL', states, seq)
  if e[2][12] ~= '' then redis.call('HDEL', cids, e[2][8] .. '\n' .. e[2][12]) end
  redis.call('XDEL', stream, e[1])
end
if keep > 0 then
  local over = redis.call('XLEN', stream) - keep + 1
  if over > 0 then
    for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', over)) do drop(e) end
  end
end
if maxAge > 0 then
  for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', 16)) do
    if tonumber(e[2][4]) >= ts - maxAge then break end
    drop(e)
  end
end
local seq = redis.call('HINCRBY', room, 'seq', 1)
if kind == '2' then body = 'null' end
if keep > 0 then
  redis.call('XADD', stream, 'MAXLEN', '=', keep, seq .. '-0', 'k', kind, 't', ts, 'g', target, 'u', user, 'n', name,
             'c', cid, 'o', origin)
else
  redis.call('XADD', stream, seq .. '-0', 'k', kind, 't', ts, 'g', target, 'u', user, 'n', name, 'c', cid, 'o', origin)
end
redis.call('HSET', bodies, seq, body)
if cid ~= '' then redis.call('HSET', cids, user .. '\n' .. cid, seq) end
if kind == '1' then
  redis.call('HSET', bodies, target, body)
  redis.call('HSET', states, target, (redis.call('HGET', states, target) or '1') .. ' ' .. seq)
elseif kind == '2' then
  -- A deleted message keeps no text anywhere: neither its own body nor its edits'.
  local st = redis.call('HGET', states, target)
  redis.call('HSET', bodies, target, 'null')
  if st then
    for s in string.gmatch(string.sub(st, 2), '%d+') do redis.call('HSET', bodies, s, 'null') end
  end
  redis.call('HSET', states, target, '2')
end
local event = table.concat({'E', epoch, origin, seq, ts, kind, target, user, name, cid, body}, '\n')
if channel == '' then return {'ok', epoch, seq, ts, event} end
redis.call('SPUBLISH', channel, event)
return {'ok', epoch, seq, ts}
)lua";

/**
 * read: KEYS room, stream, bodies, states. ARGV dir ("a" after, "b" before, "l" latest),
 * from, limit. -> {epoch or "", seq, oldest, more, then 10 values an event: seq, ts, kind,
 * state, target, user, name, cid, body, origin}, ascending.
 */
inline constexpr const char* readScript = R"lua(
local room, stream, bodies, states = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = redis.call('HGET', room, 'epoch') or ''
local seq = tonumber(redis.call('HGET', room, 'seq') or '0')
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local oldest = seq + 1
if first then oldest = tonumber(string.match(first[1], '^(%d+)')) end
local dir, from, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local entries = {}
if limit > 0 then
  if dir == 'a' then
    entries = redis.call('XRANGE', stream, '(' .. from .. '-0', '+', 'COUNT', limit + 1)
  else
    local before = from
    if dir == 'l' then before = seq + 1 end
    if before > 1 then
      entries = redis.call('XREVRANGE', stream, '(' .. before .. '-0', '-', 'COUNT', limit + 1)
    end
  end
end
local more = 0
if #entries > limit then
  more = 1
  entries[#entries] = nil
end
local out = {epoch, seq, oldest, more}
local n = #entries
for i = 1, n do
  local e = entries[i]
  if dir ~= 'a' then e = entries[n + 1 - i] end
  local s = string.match(e[1], '^(%d+)')
  local f = e[2]
  local state = '0'
  if f[2] == '0' then
    local st = redis.call('HGET', states, s)
    if st then state = string.sub(st, 1, 1) end
  end
  local body = redis.call('HGET', bodies, s) or 'null'
  for _, v in ipairs({s, f[4], f[2], state, f[6], f[8], f[10], f[12], body, f[14]}) do out[#out + 1] = v end
end
return out
)lua";

/**
 * member: KEYS room, stream, states, members. ARGV user, add (1: make a member with the read
 * mark ARGV[3] if not yet), readSeq, cap (unread counted up to).
 * -> {member 0/1, readSeq, unread, epoch or "", seq}
 */
inline constexpr const char* memberScript = R"lua(
local room, stream, states, members = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user = ARGV[1]
if ARGV[2] == '1' then redis.call('HSETNX', members, user, ARGV[3]) end
local epoch = redis.call('HGET', room, 'epoch') or ''
local seq = tonumber(redis.call('HGET', room, 'seq') or '0')
local rs = redis.call('HGET', members, user)
if not rs then return {0, 0, 0, epoch, seq} end
local unread = 0
if tonumber(rs) < seq then
  -- Deleted messages are not unread; most rooms have no edits or deletes to look up.
  local anyStates = redis.call('HLEN', states) > 0
  for _, e in ipairs(redis.call('XRANGE', stream, '(' .. rs .. '-0', '+', 'COUNT', tonumber(ARGV[4]))) do
    local f = e[2]
    if f[2] == '0' and f[8] ~= user then
      local st = anyStates and redis.call('HGET', states, string.match(e[1], '^(%d+)'))
      if not st or string.sub(st, 1, 1) ~= '2' then unread = unread + 1 end
    end
  end
end
return {1, tonumber(rs), unread, epoch, seq}
)lua";

/** markRead: KEYS room, members. ARGV user, seq. -> {mark, moved 0/1}; not a member: {0, 0}. */
inline constexpr const char* markReadScript = R"lua(
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {0, 0} end
cur = tonumber(cur)
local want = math.min(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'))
if want > cur then
  redis.call('HSET', KEYS[2], ARGV[1], want)
  return {want, 1}
end
return {cur, 0}
)lua";

/**
 * open: KEYS room. ARGV newEpoch [, stale epoch]. -> {epoch, seq}; the room is created if new.
 * With a stale epoch (a history that went back: Redis restored an older copy), a room still
 * under it takes the new epoch, so that seqs given out twice are never mistaken for each other.
 */
inline constexpr const char* openScript = R"lua(
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0)
elseif ARGV[2] and redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
end
return {redis.call('HGET', KEYS[1], 'epoch'), tonumber(redis.call('HGET', KEYS[1], 'seq'))}
)lua";

/**
 * presence: KEYS entries (td:{R}:p, node "\n" user -> name), nodes (td:{R}:pn, node -> expiry
 * ms). ARGV node, ttlMs, op, [user, name]. Every call renews this node's expiry in the room.
 * - "on" / "off": this node's user came online / went offline here. -> {}
 * - "sync": drops the entries of nodes whose expiry passed. -> {expired, live nodes...}, where
 *   expired = 1 when this node itself had expired (its entries are gone: it sets them again).
 * - "full" (a room opening on this node): "sync", this node's own stale entries dropped too
 *   (left by an earlier run under the same name), and the other nodes' entries after the
 *   live nodes: -> {0, n, node x n, then node, user, name for each entry}.
 */
inline constexpr const char* presenceScript = R"lua(
local entries, nodes, node, ttl, op = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = tonumber(redis.call('HGET', nodes, node) or '0')
redis.call('HSET', nodes, node, now + ttl)
redis.call('PEXPIRE', nodes, 3 * ttl)
if op == 'on' then
  redis.call('HSET', entries, node .. '\n' .. ARGV[4], ARGV[5])
  redis.call('PEXPIRE', entries, 3 * ttl)
  return {}
elseif op == 'off' then
  redis.call('HDEL', entries, node .. '\n' .. ARGV[4])
  return {}
end
local live, dead, any = {}, {}, false
local all = redis.call('HGETALL', nodes)
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now then
    dead[all[i]] = true
    any = true
    redis.call('HDEL', nodes, all[i])
  else
    live[#live + 1] = all[i]
  end
end
local out = {mine < now and 1 or 0}
if op == 'full' then out = {0, #live} end
for _, n in ipairs(live) do out[#out + 1] = n end
if any or op == 'full' then
  local es = redis.call('HGETALL', entries)
  for i = 1, #es, 2 do
    local nl = string.find(es[i], '\n', 1, true)
    local n = nl and string.sub(es[i], 1, nl - 1) or ''
    if not nl or dead[n] or (op == 'full' and n == node) then
      redis.call('HDEL', entries, es[i])
    elseif op == 'full' and n ~= node then
      out[#out + 1] = n
      out[#out + 1] = string.sub(es[i], nl + 1)
      out[#out + 1] = es[i + 1]
    end
  end
end
return out
)lua";

} // namespace tongdao::chat::redis
