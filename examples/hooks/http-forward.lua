-- Write every message of archive/# to an HTTP store, one object per message: a PUT to
-- BASE/<topic>/<time>-<n> with the payload as body (an S3-compatible bucket that
-- accepts unsigned PUTs, or any collector). Subscribers get the message at once; the
-- PUT happens beside delivery. When the endpoint is slow the hook's slots and queue fill
-- (hook_http_max_concurrent, hook_http_max_queue) and further messages are not written
-- (counted as http_busy in `lunamq-ctl hooks`, and logged here once per 100).
-- The URL must be allowed in lunamq.conf:  hook_http_allow http://127.0.0.1:9000/archive/
local BASE = "http://127.0.0.1:9000/archive/"
local n, skipped = 0, 0

-- a topic's levels as URL path segments: anything but letters, digits, - _ . ~ and / is
-- %-encoded. (A topic level ".." would step out of BASE: hook_http_allow refuses that.)
local function url_path(topic)
  return (topic:gsub("[^%w%-_.~/]", function(c) return string.format("%%%02X", c:byte()) end))
end

return {
  topics = {"archive/#"},

  on_publish = function(msg)
    n = n + 1
    local ok, err = broker.http.request{
      method = "PUT",
      url = BASE .. url_path(msg.topic) .. "/" .. string.format("%.3f-%d", broker.time(), n),
      headers = {["content-type"] = msg.properties.content_type or "application/octet-stream"},
      body = msg.payload,
      on_response = function(status, headers)
        if status == nil or status >= 300 then
          broker.log("warning", "archive write failed: " .. tostring(status or headers))
        end
      end,
    }
    if not ok then
      skipped = skipped + 1
      if skipped % 100 == 1 then broker.log("warning", "archive: " .. err .. ", " .. skipped .. " not written") end
    end
    return msg
  end,
}
