-- wrk script: POST /user/signup with a unique e-mail per request, count answers by status.
-- Usage: wrk ... -s bench/signup.lua URL -- <run-prefix> [minimal]
-- ("minimal": e-mail and password only, for fastapi-users' register endpoint too)
local counter = 0
local threads = {}
local prefix = "run"
local names = ',"given_name":"Ada","family_name":"Lovelace"'
tid = 0
statuses = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[1] or "run"
   if args[2] == "minimal" then
      names = ""
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local body = '{"email":"' .. prefix .. "-" .. tid .. "-" .. counter ..
      '@example.com","password":"Quiet-Harbour-Lantern-42"' .. names .. "}"
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local merged = {}
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      for code, n in pairs(s) do
         merged[code] = (merged[code] or 0) + n
      end
   end
   local parts = {}
   for code, n in pairs(merged) do
      table.insert(parts, string.format('"%d":%d', code, n))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":{%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, table.concat(parts, ",")))
end
