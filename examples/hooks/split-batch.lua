-- A gateway sends many readings at once on batch/<gateway>:
--   {"readings": [{"sensor": "s1", "value": 1}, {"sensor": "s2", "value": 2}]}
-- Split it into one message per reading on readings/<sensor>.
return {
  topics = {"batch/+"},
  on_publish = function(msg)
    local ok, v = pcall(json.decode, msg.payload)
    if not ok or type(v) ~= "table" or type(v.readings) ~= "table" then
      return false, 0x99
    end
    local out = {}
    for _, r in ipairs(v.readings) do
      out[#out + 1] = {topic = "readings/" .. tostring(r.sensor), payload = json.encode(r)}
    end
    return out
  end,
}
