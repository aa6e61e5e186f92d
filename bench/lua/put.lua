-- Write workload: every request PUTs a new key with a 256-byte value.
-- Key: bench/w/<tag>/<thread id>/<per-thread counter>; <tag> (first script
-- argument) is distinct per run, so no two requests of a benchmark write the
-- same key. A success is status 200 with body "true".
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local value = string.rep("v", 255) .. "\n"   -- 256 bytes
local headers = { ["Content-Type"] = "application/octet-stream" }
local tag = "run"
local n = 0

function init(args)
  tag = args[1] or tag
end

function request()
  n = n + 1
  return wrk.format("PUT", string.format("/v1/kv/bench/w/%s/%d/%d", tag, id, n),
                    headers, value)
end

response = common.response_checker(function(body)
  return string.sub(body, 1, 4) == "true"
end)
