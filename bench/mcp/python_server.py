"""The official Python MCP SDK's server, for scripts/bench-mcp: stateless Streamable HTTP
with JSON responses (as `selfbuild serve` answers), one uvicorn worker, no access log.

Tools: `echo` (returns its argument: the SDK's cheapest tool call) and `list_agents` (an
empty list, the shape of selfbuild's answer without a store). Usage: python_server.py PORT
"""
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("bench")


@server.tool()
def echo(text: str = "") -> str:
    """Returns its argument."""
    return text


@server.tool()
def list_agents() -> dict:
    """An empty agent list."""
    return {"agents": []}


app = server.streamable_http_app(json_response=True, stateless_http=True)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, workers=1)
