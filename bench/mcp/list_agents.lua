-- wrk script: MCP tools/call of a read-only tool (list_agents) on the embedded store.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SELFBUILD_BENCH_KEY")
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_agents","arguments":{}}}'

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"isError":true') then
    error("HTTP " .. status .. ": " .. body)
  end
end
