#!/usr/bin/env python3
"""A registered agent played by the official MCP Python SDK, for selfbuild's peer tests.

Usage: peer_agent.py --port N --record FILE [--key KEY] [--windows later,now,...]

Serves Streamable HTTP on 127.0.0.1:N/mcp with the two tools selfbuild calls on agents
(docs/mcp.md): `request_deployment_window` answers from --windows in turn ("later" or "now";
"now" once they run out) and `notify_dependency_changed` acknowledges. Every call is appended
to FILE as one JSON line {"tool", "arguments"}, which the test reads back. With --key, a
request without `Authorization: Bearer KEY` gets 401.
"""

import argparse
import json
import sys
import threading

try:
    import uvicorn
    from mcp.server.mcpserver import MCPServer
except ImportError as e:  # fail loudly, never skip
    sys.exit(f"the MCP Python SDK is missing ({e}); install it with: pip install mcp==2.3.0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--key")
    parser.add_argument("--windows", default="")
    args = parser.parse_args()
    answers = [w for w in args.windows.split(",") if w]
    lock = threading.Lock()

    def record(tool: str, arguments: dict) -> None:
        with lock, open(args.record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")

    server = MCPServer("peer-agent")

    @server.tool()
    def request_deployment_window(
        agent: str,
        component: str,
        improvement_id: str,
        canary_weight: float,
        tenant_id: str | None = None,
    ) -> dict:
        """Whether selfbuild may deploy to one of this agent's components now."""
        record("request_deployment_window", {"agent": agent, "component": component,
                                             "improvement_id": improvement_id,
                                             "tenant_id": tenant_id})
        with lock:
            answer = answers.pop(0) if answers else "now"
        if answer == "later":
            return {"deploy_now": False, "retry_after_seconds": 600, "reason": "batch job running"}
        return {"deploy_now": True, "reason": "quiet"}

    @server.tool()
    def notify_dependency_changed(
        event: str,
        changed_agent: str,
        component: str,
        improvement_id: str,
        detail: str,
        at: str,
        tenant_id: str | None = None,
    ) -> dict:
        """Hears that an agent this one depends on changed."""
        record("notify_dependency_changed", {"event": event, "changed_agent": changed_agent,
                                             "component": component,
                                             "improvement_id": improvement_id,
                                             "tenant_id": tenant_id, "detail": detail, "at": at})
        return {"received": True}

    app = server.streamable_http_app(stateless_http=True, json_response=True)

    async def guarded(scope, receive, send):
        if args.key and scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {args.key}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong key"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
