-- wrk script: POST /user/signup with a unique e-mail per request, count answers by status.
-- Usage: wrk ... -s bench/signup.lua URL -- <run-prefix> [minimal|full] [solutions-file threads]
-- ("minimal": e-mail and password only, for fastapi-users' register endpoint too;
-- "form": the names and docs/form.example.toml's fields and consents;
-- solutions-file: proof-of-work solutions solved ahead of time, one a line, each sent
-- once as "challenge", each thread taking every n-th line: bench/challenge.py)
local counter = 0
local threads = {}
local prefix = "run"
local names = ',"given_name":"Ada","family_name":"Lovelace"'
local solutions = nil
local used = 0
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
   elseif args[2] == "form" then
      -- docs/form.example.toml's required and some optional fields, and its consents
      names = names .. ',"fields":{"role":"developer","company":"ACME","country":"DE",' ..
         '"birthday":"1990-01-01"},"consents":{"terms":true,"marketing":true}'
   end
   if args[3] then
      -- setup() numbered the threads (args[4] of them); each takes its own lines, so
      -- none is sent twice
      local nthreads = tonumber(args[4] or "1")
      solutions = {}
      local n = 0
      for line in io.lines(args[3]) do
         n = n + 1
         if n % nthreads == tid - 1 then
            table.insert(solutions, line)
         end
      end
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local challenge = ""
   if solutions then
      used = used + 1
      challenge = ',"challenge":"' .. (solutions[used] or "none left") .. '"'
   end
   local body = '{"email":"' .. prefix .. "-" .. tid .. "-" .. counter ..
      '@example.com","password":"Quiet-Harbour-Lantern-42"' .. names .. challenge .. "}"
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
