-- Aggregate metrics/<device>/<name> numbers per interval and POST the batch as JSON to a
-- collector: {"at": ..., "count": N, "series": {"<device>/<name>": {"n", "sum", "min",
-- "max"}}}. Delivery never waits for the POST: broker.http.request returns at once.
-- A batch that could not be sent (endpoint down, "busy") is merged into the next one,
-- up to MAX_SERIES series, so an outage costs memory only up to that bound.
-- The URL must be allowed in lunamq.conf:  hook_http_allow http://127.0.0.1:8080/ingest
local URL = "http://127.0.0.1:8080/ingest"
local MAX_SERIES = 10000
local series, nseries, count = {}, 0, 0
local failed = 0

local function add(key, n, v_min, v_max, v_sum)
  local s = series[key]
  if not s then
    if nseries >= MAX_SERIES then return end
    s = {n = 0, sum = 0, min = v_min, max = v_max}
    series[key] = s
    nseries = nseries + 1
  end
  s.n, s.sum = s.n + n, s.sum + v_sum
  if v_min < s.min then s.min = v_min end
  if v_max > s.max then s.max = v_max end
end

return {
  topics = {"metrics/+/+"},
  interval = 5,

  on_publish = function(msg)
    local v = tonumber(msg.payload)
    if v then
      local dev, name = msg.topic:match("^metrics/([^/]+)/([^/]+)$")
      add(dev .. "/" .. name, 1, v, v, v)
      count = count + 1
    end
    return msg
  end,

  on_timer = function()
    if count == 0 then return end
    local batch, n = series, count
    series, nseries, count = {}, 0, 0
    local function keep() -- not sent: back into the next batch
      failed = failed + 1
      for k, s in pairs(batch) do add(k, s.n, s.min, s.max, s.sum) end
      count = count + n
    end
    local ok, err = broker.http.request{
      method = "POST", url = URL, timeout = 10,
      headers = {["content-type"] = "application/json"},
      body = json.encode({at = broker.time(), count = n, series = batch}),
      on_response = function(status, headers, body)
        if status == nil or status >= 300 then
          broker.log("warning", "batch of " .. n .. " not accepted: " .. tostring(status or headers))
          keep()
        end
      end,
    }
    if not ok then
      broker.log("warning", "batch of " .. n .. " not sent: " .. err)
      keep()
    end
  end,
}
