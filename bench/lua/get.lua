-- Read workload: GET one of the 1,000 preloaded keys bench/r/0000..0999,
-- chosen at random. First script argument: "default" or "stale" (adds
-- ?stale). A success is status 200 with a JSON array body.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local NKEYS = 1000
local reqs = {}

function init(args)
  local q = (args[1] == "stale") and "?stale" or ""
  for i = 1, NKEYS do
    reqs[i] = wrk.format("GET", string.format("/v1/kv/bench/r/%04d%s", i - 1, q))
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return reqs[math.random(NKEYS)]
end

response = common.response_checker(function(body)
  return string.sub(body, 1, 1) == "["
end)
