-- wrk script: MCP tools/list on the stateless endpoint.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SELFBUILD_BENCH_KEY")
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'

function response(status, headers, body)
  if status ~= 200 then
    error("HTTP " .. status .. ": " .. body)
  end
end
