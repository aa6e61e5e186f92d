-- Registration workload (bench/catalog-bench.sh): every request registers a
-- new service instance on the agent of the server it is sent to,
--   PUT /v1/agent/service/register
--   {"ID":"svc-<tag>-<thread id>-<n>","Name":"api-NN","Port":..,
--    "Tags":["bench","v1"],"Check":{"TTL":"30m","Status":"passing"}}
-- <tag> (first script argument) is distinct per run, so every ID is new;
-- Name is one of 50. The TTL is long enough that no check runs out during a
-- benchmark, and the check starts passing, so the catalog's critical list
-- stays empty (catalog-bench.sh checks that). A success is status 200.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local NAMES = 50
local tag, n = "run", 0

function init(args) tag = args[1] or tag end

function request()
  n = n + 1
  local body = string.format(
    '{"ID":"svc-%s-%d-%d","Name":"api-%02d","Port":%d,"Tags":["bench","v1"],' ..
    '"Check":{"TTL":"30m","Status":"passing"}}',
    tag, id, n, n % NAMES, 1024 + n % 60000)
  return wrk.format("PUT", "/v1/agent/service/register",
                    { ["Content-Type"] = "application/json" }, body)
end

response = common.response_checker(function() return true end)
