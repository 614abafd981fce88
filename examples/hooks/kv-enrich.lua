-- Add each device's site and owner, looked up in the key-value store, to its telemetry
-- as user properties: devices/<id>/telemetry gets {"site", ...} and {"owner", ...}.
-- The operator fills the store (see examples/hooks/devices.json):
--   lunamq-ctl kv load examples/hooks/devices.json
--   lunamq-ctl kv set enrich/device/m17 '{"site": "Lyon", "owner": "ops"}'
-- A device the store does not know passes unchanged, with {"site", "unknown"}.
local cache = {}          -- decoded metadata, until the stored text changes

return {
  topics = {"devices/+/telemetry"},

  on_publish = function(msg)
    local id = msg.topic:match("^devices/([^/]+)/")
    local text = broker.kv.get("enrich/device/" .. id)
    local user = msg.properties.user
    if not text then
      user[#user + 1] = {"site", "unknown"}
      return msg
    end
    local c = cache[id]
    if not c or c.text ~= text then
      local ok, meta = pcall(json.decode, text)
      if not ok or type(meta) ~= "table" then return msg end
      c = {text = text, site = tostring(meta.site or "?"), owner = tostring(meta.owner or "?")}
      cache[id] = c
    end
    user[#user + 1] = {"site", c.site}
    user[#user + 1] = {"owner", c.owner}
    return msg
  end,
}
