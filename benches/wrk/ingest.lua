-- wrk script: one message per request to the JSON ingest API, each with a new message id, over
-- 10,000 chats. Set by benches/wrk/ingest.sh: WRK_PATH (the workspace's messages route) and
-- WRK_KEY (its ingest key).
local path = os.getenv("WRK_PATH")
local key = os.getenv("WRK_KEY")
local counter = 0
local thread_tag = tostring(math.random(1, 1000000000))

request = function()
  counter = counter + 1
  local body = string.format(
    '{"message_id":"w-%s-%d","direction":"received","chat":{"id":"chat-%d","full_name":"John Doe",' ..
    '"phone":"+97254000000"},"sender":{"full_name":"John Doe","phone":"+97254000000"},' ..
    '"recipient":{"full_name":"Amnon Haha","phone":"+972500000000"},' ..
    '"text":"Hi! How are you doing today? Just checking in about the order."}',
    thread_tag, counter, counter % 10000)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, body)
end

local non202 = 0
response = function(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format(
    "wrk: %d requests in %.1f s: %.0f requests/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; " ..
    "socket errors %d, non-2xx %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
