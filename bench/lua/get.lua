-- Read workload: GET one of the 1,000 preloaded keys bench/r/0000..0999,
-- chosen at random. First script argument: "default" or "stale" (adds
-- ?stale). A success is status 200 with a JSON array body.
-- "linearizable" or "serializable" read the key from etcd's JSON gateway
-- instead (POST /v3/kv/range, see etcd.lua; bench/compare.sh).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local NKEYS = 1000
local reqs = {}
local etcd = nil

function init(args)
  local mode = args[1]
  local q = (mode == "stale") and "?stale" or ""
  if mode == "linearizable" or mode == "serializable" then
    etcd = dofile(os.getenv("BENCH_LUA_DIR") .. "/etcd.lua")
  end
  for i = 1, NKEYS do
    local key = string.format("bench/r/%04d", i - 1)
    if etcd then
      reqs[i] = etcd.range(key, mode == "serializable")
    else
      reqs[i] = wrk.format("GET", "/v1/kv/" .. key .. q)
    end
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return reqs[math.random(NKEYS)]
end

response = common.response_checker(function(body)
  if etcd then
    return etcd.range_ok(body)
  end
  return string.sub(body, 1, 1) == "["
end)
