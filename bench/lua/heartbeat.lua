-- TTL heartbeat workload (bench/catalog-bench.sh): PUT
-- /v1/agent/check/<verb>/service:<id> for the services in a file (one ID per
-- line; the first script argument), cycling over them in order. They must be
-- registered through the server this wrk targets: a server is the agent of
-- its own node only. Second argument, the mode:
--   pass       always "pass": after the first, a heartbeat changes nothing;
--   alternate  the k-th heartbeat of a service is "warn" for k = 1, 3, ...
--              and "pass" for k = 2, 4, ...: every one changes the check's
--              status (if all start passing), so every one is a Raft entry.
-- Run it with one wrk thread (-t1): two threads would each cycle over the
-- whole list and could send the same service's heartbeats out of order.
-- A success is status 200.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local pass_reqs, warn_reqs = {}, {}
local alternate = false
local n = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  local headers = {}
  for sid in f:lines() do
    if sid ~= "" then
      local path = "/v1/agent/check/%s/service:" .. sid
      pass_reqs[#pass_reqs + 1] = wrk.format("PUT", string.format(path, "pass"), headers, "")
      warn_reqs[#warn_reqs + 1] = wrk.format("PUT", string.format(path, "warn"), headers, "")
    end
  end
  f:close()
  assert(#pass_reqs > 0, "no service IDs in " .. args[1])
  alternate = args[2] == "alternate"
end

function request()
  local i = n % #pass_reqs + 1
  local lap = math.floor(n / #pass_reqs)
  n = n + 1
  if alternate and lap % 2 == 0 then
    return warn_reqs[i]
  end
  return pass_reqs[i]
end

response = common.response_checker(function() return true end)
