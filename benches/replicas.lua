-- wrk script for benches/replicas.sh (benches/drain.lua is end_to_end.sh's): POSTs gen_drain.py bodies (`--format nul`)
-- to /logs as Logplex does (application/logplex-1, Logplex-Msg-Count, a fresh
-- random Logplex-Frame-Id per POST, basic auth), cycling through the bodies,
-- and prints one machine-readable RESULT line when done.
--
--   BENCH_BODIES=/tmp/load.nul BENCH_AUTH='Basic ...' wrk -t1 -c8 -d10s -s benches/replicas.lua http://127.0.0.1:PORT/logs

local path = assert(os.getenv("BENCH_BODIES"), "BENCH_BODIES is not set")
local auth = assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH is not set")

local f = assert(io.open(path, "rb"))
local data = f:read("*a")
f:close()

-- Octet-counted frames in one body ("<N> <N bytes>" repeated).
local function frames(body)
  local n, pos = 0, 1
  while pos <= #body do
    local sp = body:find(" ", pos, true)
    if not sp then break end
    local len = tonumber(body:sub(pos, sp - 1))
    if not len then break end
    pos = sp + 1 + len
    n = n + 1
  end
  return n
end

bodies, counts = {}, {}
local total = 0
do
  local pos = 1
  while pos <= #data do
    local z = data:find("\0", pos, true) or (#data + 1)
    if z > pos then
      local b = data:sub(pos, z - 1)
      bodies[#bodies + 1] = b
      counts[#counts + 1] = tostring(frames(b))
      total = total + frames(b)
    end
    pos = z + 1
  end
end
assert(#bodies > 0, "no bodies in " .. path)
frames_per_body = total / #bodies

local i = 0

function init(args)
  -- A different start per thread; Frame-Ids must not repeat across threads.
  local seed = os.time() + math.floor((os.clock() * 1e6) % 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1e6
  math.randomseed(seed)
  i = math.random(#bodies) - 1
end

function request()
  i = i % #bodies + 1
  local id = string.format("%08X%08X%08X%08X",
    math.random(0, 0x7FFFFFFF), math.random(0, 0x7FFFFFFF),
    math.random(0, 0x7FFFFFFF), math.random(0, 0x7FFFFFFF))
  return wrk.format("POST", nil, {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/logplex-1",
    ["Logplex-Msg-Count"] = counts[i],
    ["Logplex-Frame-Id"] = id,
  }, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d socket_errors=%d http_errors=%d frames_per_body=%.4f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status, frames_per_body))
end
