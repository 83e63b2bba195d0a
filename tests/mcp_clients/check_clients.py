#!/usr/bin/env python3
"""Real MCP clients against `selfbuild serve`: the official Python SDK and the MCP Inspector CLI.

Usage: check_clients.py <path to the selfbuild binary>

Starts `selfbuild serve` on a free loopback port with a temporary data directory and two API
keys, runs both clients, stops the server, and exits non-zero naming what failed.
"""

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "sb-admin-" + os.urandom(8).hex()
READ_KEY = "sb-read-" + os.urandom(8).hex()
EXPECTED_TOOLS = 13

try:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
except ImportError as e:  # fail loudly, never skip
    sys.exit(f"the MCP Python SDK is missing ({e}); install it with: pip install mcp==2.3.0")

INSPECTOR = REPO / "node_modules" / ".bin" / "mcp-inspector"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Server:
    """`selfbuild serve` on a free port, stopped on exit."""

    def __init__(self, binary: str, data_dir: str):
        self.port = free_port()
        keys = [
            {"id": "ci-admin", "sha256": digest(ADMIN_KEY), "tenant": "*", "scopes": ["admin"]},
            {"id": "ci-read", "sha256": digest(READ_KEY), "tenant": "acme", "scopes": ["read"]},
        ]
        env = dict(os.environ, SELFBUILD_API_KEYS=json.dumps(keys), RUST_LOG="info")
        self.log = []
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                data_dir,
                "--scenario",
                str(REPO / "events/scenarios/timeouts.json"),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise SystemExit("selfbuild serve did not start:\n" + "\n".join(self.log[-30:]))
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


async def python_sdk(url: str):
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                check(init.server_info.name == "selfbuild", f"server name: {init.server_info}")
                tools = await session.list_tools()
                names = [t.name for t in tools.tools]
                check(len(names) == EXPECTED_TOOLS, f"tools/list gave {names}")

                status = await session.call_tool("get_system_status", {})
                check(not status.is_error, f"get_system_status: {status}")
                check(status.structured_content["halt"]["on"] is False, f"status: {status.structured_content}")

                insights = await session.call_tool("query_telemetry_insights", {"time_range_hours": 24})
                check(not insights.is_error, f"query_telemetry_insights: {insights}")
                check(insights.structured_content["opportunities"], "no opportunities in the timeouts scenario")

                trigger = await session.call_tool(
                    "trigger_improvement_cycle",
                    {"tenant_id": "acme", "components": ["orders-api"], "dry_run": True},
                )
                check(not trigger.is_error, f"trigger_improvement_cycle: {trigger}")
                check(trigger.structured_content["status"] == "started", f"trigger: {trigger.structured_content}")
                again = await session.call_tool(
                    "trigger_improvement_cycle", {"tenant_id": "acme", "components": ["orders-api"]}
                )
                check(again.structured_content["status"] == "duplicate", f"dedup: {again.structured_content}")

                bad = await session.call_tool("list_improvements", {"limit": 0})
                check(bad.is_error, f"limit 0 should be an error: {bad}")
                check("limit" in bad.content[0].text, f"error names the field: {bad.content}")

                agent = await session.call_tool(
                    "register_agent",
                    {"name": "ci-agent", "url": "https://agent.example", "capabilities": ["triage"]},
                )
                check(not agent.is_error, f"register_agent: {agent}")
                print(f"python sdk: initialized ({init.protocol_version}), {len(names)} tools, 6 calls ok")

    # A request without a key is refused with 401.
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        check(response.status_code == 401, f"no key: HTTP {response.status_code}")
        check(response.headers.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate")
        print("python sdk: no key -> 401 with WWW-Authenticate: Bearer")


def inspector(url: str):
    if not INSPECTOR.exists():
        raise SystemExit(f"MCP Inspector is missing ({INSPECTOR}); install it with: npm ci")
    base = [str(INSPECTOR), "--cli", url, "--transport", "http", "--header", f"Authorization: Bearer {READ_KEY}"]
    listed = subprocess.run(
        base + ["--method", "tools/list", "--strict"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    check(listed.returncode == 0, f"inspector tools/list exit {listed.returncode}:\n{listed.stdout}\n{listed.stderr}")
    tools = json.loads(listed.stdout)["tools"]
    check(len(tools) == EXPECTED_TOOLS, f"inspector saw {len(tools)} tools")
    called = subprocess.run(
        base + ["--method", "tools/call", "--tool-name", "list_agents"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    check(called.returncode == 0, f"inspector tools/call exit {called.returncode}:\n{called.stdout}\n{called.stderr}")
    result = json.loads(called.stdout)
    check(not result.get("isError"), f"list_agents: {result}")
    print(f"inspector cli: tools/list --strict ({len(tools)} tools), tools/call list_agents ok")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(sys.argv[1], data_dir)
        try:
            asyncio.run(python_sdk(server.url))
            inspector(server.url)
        except AssertionError as e:
            print("\n".join(server.log[-40:]), file=sys.stderr)
            sys.exit(f"MCP client check failed: {e}")
        finally:
            server.stop()
    print("MCP clients: ok")


if __name__ == "__main__":
    main()
