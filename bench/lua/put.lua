-- Write workload: every request PUTs a new key with a 256-byte value.
-- Key: bench/w/<tag>/<thread id>/<per-thread counter>; <tag> (first script
-- argument) is distinct per run, so no two requests of a benchmark write the
-- same key. A success is status 200 with body "true".
-- With a second argument "etcd" the requests go to etcd's JSON gateway
-- instead (POST /v3/kv/put, see etcd.lua; bench/compare.sh).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local value = string.rep("v", 255) .. "\n"   -- 256 bytes
local headers = { ["Content-Type"] = "application/octet-stream" }
local tag = "run"
local n = 0
local etcd = nil

function init(args)
  tag = args[1] or tag
  if args[2] == "etcd" then
    etcd = dofile(os.getenv("BENCH_LUA_DIR") .. "/etcd.lua")
  end
end

function request()
  n = n + 1
  local key = string.format("bench/w/%s/%d/%d", tag, id, n)
  if etcd then
    return etcd.put(key, value)
  end
  return wrk.format("PUT", "/v1/kv/" .. key, headers, value)
end

response = common.response_checker(function(body)
  if etcd then
    return etcd.put_ok(body)
  end
  return string.sub(body, 1, 4) == "true"
end)
