-- wrk script for scripts/bench-mcp: POSTs $MCP_BODY to an MCP endpoint. Every reply is
-- checked: HTTP 200, containing $MCP_EXPECT, and no tool error ("isError":true). done()
-- prints BAD_REPLIES <n> (and the first bad reply) for the script to refuse the run.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  first_bad = ""
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
local key = os.getenv("MCP_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = os.getenv("MCP_BODY")
local expect = os.getenv("MCP_EXPECT")

function response(status, headers, body)
  if status ~= 200 or not string.find(body, expect, 1, true)
      or string.find(body, '"isError":true', 1, true) then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body, 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  local sample = ""
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
    local s = t:get("first_bad")
    if s and s ~= "" then
      sample = s
    end
  end
  io.write(string.format("BAD_REPLIES %d\n", total))
  if sample ~= "" then
    io.write("FIRST_BAD " .. sample .. "\n")
  end
end
