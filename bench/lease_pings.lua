-- wrk script: pings of held numbers only, the visitor API's commonest request.
--
-- bench/lease_api.py starts the visits before wrk runs (so no lease is in the measured run) and
-- writes their ids, one "session_id visitor_id" line each, to SESSIONS; each connection pings
-- them round-robin from its own offset, moving to a new page every third ping, as the widget
-- does for a visitor who reads a page for 30 s before the next one.
--
-- Usage: wrk -s bench/lease_pings.lua URL -- SESSIONS [ORIGIN]
-- done() prints one line "BENCH_JSON {...}" like bench/lease_mix.lua's.

local origin = "http://127.0.0.1:8000"
sessions = {}
nsessions = 0
cursor = 0
pings, bad_status, unparsed = 0, 0, 0

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_no", #threads)
end

local headers

function init(args)
   if args[2] then origin = args[2] end
   for line in io.lines(args[1]) do
      local sid, vid = string.match(line, "^(%x+) (%x+)$")
      if sid then
         nsessions = nsessions + 1
         sessions[nsessions] = {sid = sid, vid = vid, done = 0}
      end
   end
   if nsessions == 0 then error("no sessions in " .. args[1]) end
   cursor = ((thread_no or 1) - 1) * 997 % nsessions
   headers = {["Content-Type"] = "application/json", ["Origin"] = origin}
end

function request()
   cursor = cursor % nsessions + 1
   local s = sessions[cursor]
   s.done = s.done + 1
   local body = string.format('{"visitor_id":"%s","url":"https://bench.example/page/%d"}',
                              s.vid, math.floor(s.done / 3))
   return wrk.format("POST", "/api/v1/visits/" .. s.sid .. "/ping", headers, body)
end

function response(status, _headers, body)
   if status ~= 200 then
      bad_status = bad_status + 1
      return
   end
   if not string.find(body, '"session_id"', 1, true) then
      unparsed = unparsed + 1
      return
   end
   pings = pings + 1
end

function done(summary, latency, _requests)
   local total = {pings = 0, bad_status = 0, unparsed = 0}
   for _, thread in ipairs(threads) do
      for key, _ in pairs(total) do
         total[key] = total[key] + (thread:get(key) or 0)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
      '"p99_us":%d,"max_us":%d,"leases":0,"pings":%d,"fallbacks":0,"bad_status":%d,' ..
      '"unparsed":%d}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      total.pings, total.bad_status, total.unparsed))
end
