-- Sum transactions/<region>/<merchant> {"amount": 12.5} per region and publish the totals of
-- each window every `interval` seconds to stats/transactions/<region> (retained).
local totals = {}

return {
  topics = {"transactions/+/+"},
  interval = 5,

  on_publish = function(msg)
    local region = msg.topic:match("^transactions/([^/]+)/")
    local ok, v = pcall(json.decode, msg.payload)
    if ok and type(v) == "table" and type(v.amount) == "number" then
      local t = totals[region] or {count = 0, amount = 0}
      t.count = t.count + 1
      t.amount = t.amount + v.amount
      totals[region] = t
    end
    return msg -- the transaction itself still goes to its subscribers
  end,

  on_timer = function()
    for region, t in pairs(totals) do
      broker.publish("stats/transactions/" .. region,
        json.encode({count = t.count, amount = t.amount, at = broker.time()}),
        {qos = 1, retain = true})
    end
    totals = {}
  end,
}
