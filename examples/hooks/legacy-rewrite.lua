-- Old firmware publishes on legacy/<id>/data; everything else expects
-- devices/<id>/telemetry. Rewrite the topic and say where it came from.
return {
  topics = {"legacy/+/data"},
  on_publish = function(msg)
    local id = msg.topic:match("^legacy/([^/]+)/data$")
    msg.topic = "devices/" .. id .. "/telemetry"
    table.insert(msg.properties.user, {"source", "legacy"})
    return msg
  end,
}
