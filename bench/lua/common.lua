-- Shared by put.lua and get.lua (loaded with dofile; BENCH_LUA_DIR is set by
-- bench/lib/common.sh). Each wrk thread counts good and bad responses; done()
-- prints one machine-readable line that bench/lib/summarize.py parses:
--   BENCH_RESULT requests=.. duration_us=.. rps=.. p50_us=.. p99_us=..
--                ok=.. bad=.. connect=.. read=.. write=.. timeout=..
-- and, if the environment has BENCH_QUANTILES=1 (cluster-bench.sh's runs
-- spread over several wrk processes), a line of latency quantiles:
--   BENCH_QUANTILES <percent>:<us> ...
-- "bad" counts every response that is not a success (non-200 status, or a
-- 200 whose body is not what the workload expects); the first few bad
-- statuses are printed so a failing run shows why.

local M = {}

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
ok, bad, shown = 0, 0, 0

-- good_body(body) -> bool is set by the workload script.
function M.response_checker(good_body)
  return function(status, headers, body)
    if status == 200 and good_body(body) then
      ok = ok + 1
    else
      bad = bad + 1
      if shown < 3 then
        shown = shown + 1
        io.stderr:write(string.format("thread %d: bad response: status %d body %q\n",
          id, status, string.sub(body or "", 1, 120)))
      end
    end
  end
end

function done(summary, latency, requests)
  local tok, tbad = 0, 0
  for _, t in ipairs(threads) do
    tok = tok + (t:get("ok") or 0)
    tbad = tbad + (t:get("bad") or 0)
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d " ..
    "ok=%d bad=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(99),
    tok, tbad, e.connect, e.read, e.write, e.timeout))
  if tbad > 0 then
    io.write(string.format("non-200 (or unexpected body) responses: %d\n", tbad))
  end
  if os.getenv("BENCH_QUANTILES") == "1" then
    -- For merging the latencies of parallel wrk runs (summarize.py): the
    -- latency quantiles on a grid, 0.1 % steps up to 99 %, 0.01 % above.
    local q = {}
    for i = 0, 990 do
      q[#q + 1] = string.format("%.1f:%d", i / 10, latency:percentile(i / 10))
    end
    for i = 9901, 9999 do
      q[#q + 1] = string.format("%.2f:%d", i / 100, latency:percentile(i / 100))
    end
    -- (wrk's percentile(100) is 0: its rank overshoots the count)
    q[#q + 1] = string.format("100.00:%d", latency.max)
    io.write("BENCH_QUANTILES " .. table.concat(q, " ") .. "\n")
  end
end

return M
