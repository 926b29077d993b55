-- wrk script for benches/end_to_end.sh: posts Logplex drain bodies to /logs.
--
--   DRAIN_BODIES   file of NUL-separated bodies (benches/gen_drain.py --format nul)
--   DRAIN_AUTH     "user:password" for basic auth (sent to the floor too, ignored there)
--   DRAIN_FRAMES   frames per body (the Logplex-Msg-Count header)
--   DRAIN_ADVANCE  1: bodies from `gen_drain.py --worst-case`; each pass over
--                  them replaces the stamp 2023-02-13T22 (date and hour of every
--                  timestamp) by one hour later, so repeated samples are never stale
--
-- Every request carries a Logplex-Frame-Id unique to the run (thread, counter):
-- de-duplication is on and never drops a batch.

local bodies_path = os.getenv("DRAIN_BODIES")
local auth = os.getenv("DRAIN_AUTH") or "dynoguard:secret"
local frames = os.getenv("DRAIN_FRAMES") or "100"
local advance = os.getenv("DRAIN_ADVANCE") == "1"
local STAMP = "2023-02-13T22"
local BASE = 1676325600 -- 2023-02-13T22:00:00Z

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function b64(data)
   local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
   return ((data:gsub(".", function(x)
      local r, byte = "", x:byte()
      for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
      return r
   end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
      if #x < 6 then return "" end
      local c = 0
      for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
      return chars:sub(c + 1, c + 1)
   end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local bodies = {}
local parts = {}
local i = 0
local pass = 0
local sent = 0
local headers

-- The plain split of s on the literal sep.
local function split(s, sep)
   local out, from = {}, 1
   while true do
      local a, b = s:find(sep, from, true)
      if not a then
         table.insert(out, s:sub(from))
         return out
      end
      table.insert(out, s:sub(from, a - 1))
      from = b + 1
   end
end

function init(args)
   local f = assert(io.open(bodies_path, "rb"))
   local all = f:read("*a")
   f:close()
   bodies = split(all, "\0")
   if advance then
      for k, b in ipairs(bodies) do parts[k] = split(b, STAMP) end
   end
   headers = {
      ["Content-Type"] = "application/logplex-1",
      ["Authorization"] = "Basic " .. b64(auth),
      ["Logplex-Msg-Count"] = frames,
      ["Logplex-Drain-Token"] = "d.00000000-0000-0000-0000-000000000000",
   }
end

function request()
   i = i + 1
   if i > #bodies then
      i = 1
      pass = pass + 1
   end
   sent = sent + 1
   headers["Logplex-Frame-Id"] = string.format("%d-%d", thread_id or 0, sent)
   local body
   if advance then
      local stamp = os.date("!%Y-%m-%dT%H", BASE + pass * 3600)
      body = table.concat(parts[i], stamp)
   else
      body = bodies[i]
   end
   return wrk.format("POST", "/logs", headers, body)
end
