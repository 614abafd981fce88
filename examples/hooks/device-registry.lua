-- Device registry: a device named X -- the CN of its client certificate, or its username
-- when it connected without one -- may subscribe only under devices/X/# and publish only
-- under devices/X/.
--
-- on_subscribe gates subscriptions only; writes are on_publish's job (below) or the
-- acl_file's (`pattern write devices/%u/#` when usernames are the device names).
-- A client with no usable name (none, or one with / + # that would widen its subtree)
-- is refused at CONNECT. Returning nil from on_connect leaves the password to the
-- password_file; `true` would let the client in without it.
local function device_of(client)
  local x = client.username
  if client.cert then x = client.cert.cn end -- a certificate without a CN names nobody
  if not x or x == "" or x:find("[/+#]") then return nil end
  return x
end

-- Is topic (or filter) devices/X itself or under it?
local function inside(topic, x)
  local top = "devices/" .. x
  return topic == top or topic:sub(1, #top + 1) == top .. "/"
end

return {
  on_connect = function(client)
    if not device_of(client) then return false, 0x87 end -- not authorised
  end,

  on_subscribe = function(client, filter, qos)
    local x = device_of(client)
    local f = filter:match("^%$share/[^/]+/(.+)$") or filter -- a shared subscription's filter
    if x and inside(f, x) then return true end
    broker.log("notice", "device", x or "?", "may not subscribe to", filter)
    return false, 0x87
  end,

  -- every message a client publishes passes here: keep on_publish cheap. (`#` does not
  -- match topics that begin with `$`: deny those in the acl_file if devices may not.)
  topics = {"#"},
  on_publish = function(msg)
    local client = msg.client
    if not client.id then return msg end -- broker.publish from another hook: no client
    local x = device_of(client)
    if x and inside(msg.topic, x) then return msg end
    return false, 0x87
  end,
}
