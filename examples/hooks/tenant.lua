-- Tenants: usernames are "tenant:device"; a client may subscribe only under
-- tenants/<tenant>/#. A username without a colon (or no username) is refused at CONNECT.
--
-- on_subscribe gates subscriptions only: confine publishes with an on_publish like
-- device-registry.lua's (the acl_file's %u is the whole "tenant:device", not the tenant).
-- Inside its tenant a client gets nil (no opinion): the acl_file, when there is one,
-- still decides; `true` would grant without asking it.
local function tenant_of(client)
  local tenant = (client.username or ""):match("^([^:]+):.")
  if not tenant or tenant:find("[/+#]") then return nil end -- would widen the subtree
  return tenant
end

return {
  on_connect = function(client)
    if not tenant_of(client) then return false, 0x86 end -- bad user name or password
    -- nil: the password_file checks the password
  end,

  on_subscribe = function(client, filter, qos)
    local t = tenant_of(client)
    local f = filter:match("^%$share/[^/]+/(.+)$") or filter -- a shared subscription's filter
    local top = "tenants/" .. (t or "")
    if t and (f == top or f:sub(1, #top + 1) == top .. "/") then return nil end
    return false, 0x87 -- not authorised
  end,
}
