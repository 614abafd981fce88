-- A device that connected with certificate CN "X" may publish under devices/X/# only.
-- Clients without a certificate (the plain loopback listener) are not restricted.
return {
  topics = {"devices/#"},
  on_publish = function(msg)
    local cert = msg.client.cert
    if not cert then return msg end
    local prefix = "devices/" .. (cert.cn or "") .. "/"
    if msg.topic:sub(1, #prefix) ~= prefix then
      broker.log("warning", "client", msg.client.id, "CN", cert.cn, "may not publish on", msg.topic)
      return false, 0x87 -- not authorised
    end
    return msg
  end,
}
