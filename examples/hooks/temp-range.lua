-- Drop readings whose JSON "temp" is out of range; refuse payloads that are not JSON.
-- sensors/<id>/temp  {"temp": 21.5}
local MIN, MAX = -40, 125

return {
  topics = {"sensors/+/temp"},
  on_publish = function(msg)
    local ok, v = pcall(json.decode, msg.payload)
    if not ok or type(v) ~= "table" or type(v.temp) ~= "number" then
      return false, 0x99 -- payload format invalid
    end
    if v.temp < MIN or v.temp > MAX then
      return nil -- out of range: dropped
    end
    return msg
  end,
}
