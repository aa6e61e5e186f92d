-- etcd's JSON gateway (etcd 3.4, POST on the client port, keys and values
-- base64-encoded), for put.lua and get.lua when they drive etcd (loaded
-- with dofile by those scripts).
local M = {}

local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local enc = {}
for i = 1, 64 do enc[i - 1] = string.sub(chars, i, i) end

function M.b64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = enc[math.floor(v / 262144) % 64] .. enc[math.floor(v / 4096) % 64] ..
      (b and enc[math.floor(v / 64) % 64] or "=") .. (c and enc[v % 64] or "=")
  end
  return table.concat(out)
end

local headers = { ["Content-Type"] = "application/json" }
local b64_values = {}

-- POST /v3/kv/put {"key": .., "value": ..}; a success is a {"header": ..} body.
function M.put(key, value)
  local v = b64_values[value]
  if not v then
    v = M.b64(value)
    b64_values[value] = v
  end
  return wrk.format("POST", "/v3/kv/put", headers,
                    '{"key":"' .. M.b64(key) .. '","value":"' .. v .. '"}')
end

function M.put_ok(body)
  return string.sub(body, 1, 9) == '{"header"'
end

-- POST /v3/kv/range {"key": .., "serializable": ..}: linearizable (a
-- ReadIndex round through the leader) unless serializable (the member's
-- own state); a success has the key in "kvs".
function M.range(key, serializable)
  return wrk.format("POST", "/v3/kv/range", headers,
                    '{"key":"' .. M.b64(key) .. '","serializable":' ..
                    (serializable and "true" or "false") .. '}')
end

function M.range_ok(body)
  return string.find(body, '"kvs":[', 1, true) ~= nil
end

return M
