-- wrk script: website visitors against the visitor API.
--
-- Each visitor starts a visit (POST /api/v1/visits: a lease) and then pings it PINGS times
-- (POST /api/v1/visits/{session_id}/ping), as a 5-minute visit pinging every 30 s does, moving
-- to a new page every third ping. The session and visitor ids come from the answers, so a
-- thread keeps its live sessions in a FIFO queue and sends leases and pings in the ratio
-- 1:PINGS. A fifth of the visits are returning visitors (their earlier visitor_id, a new
-- session); half arrive from a paid click (utm_medium=cpc), half from elsewhere; each visitor has
-- its own address in X-Forwarded-For (the daemon trusts the bench's proxy, 127.0.0.1).
--
-- Usage: wrk -s bench/lease_mix.lua URL -- [PINGS] [ORIGIN] [SITE] [THINK_MS] [SESSIONS] [MIX]
--        [THREADS]
-- THINK_MS > 0: each connection waits that long before each request (a fixed offered load).
-- SESSIONS: a file of visits started before wrk runs, one "session_id visitor_id" line each:
-- then no lease at all, only pings of these held numbers, round-robin (PINGS is ignored).
-- MIX = "mix": the SESSIONS are visitors already on the site when the run starts, each pinged
-- PINGS times like any visit, and leases keep to exactly one in PINGS + 1 requests. Without
-- them the queue of sessions to ping runs dry whenever the leases' answers are slower than the
-- pings, and every connection that asks then leases at once: bursts of 25 to 50 leases
-- together, which no site's visitors make (they arrive independently of the server's answers).
-- THREADS: wrk's -t; each thread takes its share of SESSIONS (line i goes to thread i mod
-- THREADS), so that every session is pinged as often whatever the number of threads.
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles (in us).

local pings_per_visit = 9
local origin = "http://127.0.0.1:8000"
local site = "bench"
local think_ms = 0
local pings_only = false

-- thread state; globals so that done() can read them with thread:get()
queue = {}          -- sessions still to ping: {sid, vid, done}
qhead, qtail = 1, 0
known = {}          -- session ids answered before: an unknown one answers a lease
returning = {}      -- visitor ids of finished visits, for returning visitors
nreturning = 0
sent_leases, sent_pings = 0, 0
leases, pings, fallbacks, bad_status, unparsed = 0, 0, 0, 0, 0

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_no", #threads)
end

local headers

function init(args)
   if args[1] then pings_per_visit = tonumber(args[1]) end
   if args[2] then origin = args[2] end
   if args[3] then site = args[3] end
   if args[4] then think_ms = tonumber(args[4]) end
   if args[5] then
      if args[6] ~= "mix" then
         pings_only, pings_per_visit = true, math.huge
      end
      local nthreads, line_no = tonumber(args[7] or "1"), 0
      for line in io.lines(args[5]) do
         local sid, vid = string.match(line, "^(%x+) (%x+)$")
         line_no = line_no + 1
         if sid and (line_no - 1) % nthreads == ((thread_no or 1) - 1) % nthreads then
            known[sid] = true
            qtail = qtail + 1
            queue[qtail] = {sid = sid, vid = vid, done = 0}
         end
      end
      if qtail == 0 then error("no sessions in " .. args[5]) end
   end
   math.randomseed(os.time() * 1000 + (thread_no or 0))
   headers = {["Content-Type"] = "application/json", ["Origin"] = origin}
end

local function lease_request()
   sent_leases = sent_leases + 1
   local n = sent_leases
   local query
   if n % 2 == 0 then
      query = string.format("?utm_source=google&utm_medium=cpc&utm_campaign=c%d&gclid=g%d",
                            n % 17, math.random(1, 1000000000))
   elseif n % 3 == 0 then
      query = "?utm_source=newsletter&utm_medium=email"
   else
      query = ""
   end
   local visitor = ""
   if nreturning > 0 and math.random() < 0.2 then
      visitor = string.format(',"visitor_id":"%s"', returning[math.random(1, nreturning)])
   end
   local body = string.format(
      '{"site":"%s","url":"https://bench.example/landing/%d%s","referrer":"https://www.google.com/"%s}',
      site, n % 50, query, visitor)
   local h = {
      ["Content-Type"] = "application/json",
      ["Origin"] = origin,
      ["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 255),
                                          math.random(0, 255), math.random(1, 254)),
   }
   return wrk.format("POST", "/api/v1/visits", h, body)
end

local function ping_request()
   local s = queue[qhead]
   queue[qhead] = nil
   qhead = qhead + 1
   s.done = s.done + 1
   if s.done < pings_per_visit then
      qtail = qtail + 1
      queue[qtail] = s
   elseif nreturning < 10000 then
      nreturning = nreturning + 1
      returning[nreturning] = s.vid
   else
      returning[math.random(1, nreturning)] = s.vid
   end
   sent_pings = sent_pings + 1
   local body = string.format('{"visitor_id":"%s","url":"https://bench.example/page/%d"}',
                              s.vid, math.floor(s.done / 3))
   return wrk.format("POST", "/api/v1/visits/" .. s.sid .. "/ping", headers, body)
end

function request()
   -- keep the mix at 1 lease : PINGS pings; lease when no session is waiting for a ping
   if not pings_only and (qhead > qtail or sent_pings >= pings_per_visit * sent_leases) then
      return lease_request()
   end
   return ping_request()
end

function response(status, _headers, body)
   if status ~= 200 then
      bad_status = bad_status + 1
      return
   end
   local sid = string.match(body, '"session_id": ?"(%x+)"')
   local vid = string.match(body, '"visitor_id": ?"(%x+)"')
   if sid == nil or vid == nil then
      unparsed = unparsed + 1
      return
   end
   if known[sid] then
      pings = pings + 1
      return
   end
   known[sid] = true
   leases = leases + 1
   -- no number (old answers) or the site's fallback number (bench/lease_api.py's config)
   if string.find(body, '"numbers": ?%[%]') or string.find(body, "74990000099", 1, true) then
      fallbacks = fallbacks + 1
   end
   qtail = qtail + 1
   queue[qtail] = {sid = sid, vid = vid, done = 0}
end

function done(summary, latency, _requests)
   local total = {leases = 0, pings = 0, fallbacks = 0, bad_status = 0, unparsed = 0}
   for _, thread in ipairs(threads) do
      for key, _ in pairs(total) do
         total[key] = total[key] + (thread:get(key) or 0)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
      '"p99_us":%d,"max_us":%d,"leases":%d,"pings":%d,"fallbacks":%d,"bad_status":%d,' ..
      '"unparsed":%d}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      total.leases, total.pings, total.fallbacks, total.bad_status, total.unparsed))
end

function delay()
   return think_ms
end
