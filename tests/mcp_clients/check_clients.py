#!/usr/bin/env python3
"""Real MCP clients against selfbuild: the official Python SDK and the MCP Inspector CLI.

Usage: check_clients.py <path to the selfbuild binary>

Starts `selfbuild serve` on a free loopback port with a temporary data directory and two API
keys, runs both clients over Streamable HTTP, stops the server; then starts `selfbuild mcp
--stdio` as a child process of the Python SDK's stdio client and of the Inspector, as desktop
clients do. Exits non-zero naming what failed.
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
EXPECTED_TOOLS = 15

try:
    import httpx2
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError
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


class Mangle(httpx2.AsyncBaseTransport):
    """Sends the next queued body (and content type) instead of the client's next `ping`.

    The official client then handles the server's answer as it handles any: a JSON-RPC
    error at a non-2xx status becomes an `MCPError` with the server's code and message.
    """

    def __init__(self):
        self.inner = httpx2.AsyncHTTPTransport()
        self.queue = []

    async def handle_async_request(self, request):
        if self.queue and b'"method":"ping"' in request.content.replace(b" ", b""):
            body, content_type = self.queue.pop(0)
            headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"content-length", b"content-type")]
            headers.append((b"content-type", content_type.encode()))
            request = httpx2.Request(request.method, request.url, headers=headers, content=body)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


# Bodies no conforming client sends, the JSON-RPC code the server must answer with, and a
# part of the message that names what is wrong.
MALFORMED = [
    ("truncated JSON", b'{"jsonrpc":"2.0","id":1,"method":"ping"', "application/json", -32700, "not JSON"),
    ("not UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"p\xffng"}', "application/json", -32700, "UTF-8"),
    ("a batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', "application/json", -32600, "batch"),
    ("no jsonrpc", b'{"id":1,"method":"ping"}', "application/json", -32600, "jsonrpc"),
    ("no method", b'{"jsonrpc":"2.0","id":1}', "application/json", -32600, "method"),
    ("id null", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', "application/json", -32600, "id must be"),
    ("id 1.5", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', "application/json", -32600, "id must be"),
    ("id an object", b'{"jsonrpc":"2.0","id":{},"method":"ping"}', "application/json", -32600, "id must be"),
    ("tools/call without params", b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}', "application/json", -32602, "params"),
    ("name 5", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}', "application/json", -32602, "params.name"),
    ("arguments not an object", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_agents","arguments":"x"}}', "application/json", -32602, "params.arguments"),
    ("text/plain", b'{"jsonrpc":"2.0","id":1,"method":"ping"}', "text/plain", -32600, "Content-Type"),
]


async def json_rpc_errors(url: str):
    """The official client sees each malformed request answered as a JSON-RPC error."""
    mangle = Mangle()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    problems = []  # raised after the client closes: inside it they come out as an ExceptionGroup
    async with httpx2.AsyncClient(headers=headers, transport=mangle, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for what, body, content_type, code, names in MALFORMED:
                    mangle.queue.append((body, content_type))
                    try:
                        await asyncio.wait_for(session.send_ping(), 10)
                        problems.append(f"{what}: the server answered a malformed request")
                    except asyncio.TimeoutError:
                        problems.append(f"{what}: no answer the client could match to its request")
                    except MCPError as e:
                        if e.code != code or names not in e.message:
                            problems.append(f"{what}: {e.code} {e.message!r}, expected {code} naming {names!r}")
                # A wrong tool argument stays a tool error the model can read (not JSON-RPC).
                bad = await session.call_tool("list_improvements", {"limit": 0})
                if not bad.is_error:
                    problems.append(f"limit 0 is not a tool error: {bad}")
                await session.send_ping()
    check(not mangle.queue, "every malformed body was sent")
    check(not problems, "malformed requests:\n  " + "\n  ".join(problems))
    print(f"python sdk: {len(MALFORMED)} malformed requests -> JSON-RPC errors -32700/-32600/-32602")


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


def stdio_server(binary: str, data_dir: str) -> "StdioServerParameters":
    return StdioServerParameters(
        command=binary,
        args=[
            "--data-dir",
            data_dir,
            "mcp",
            "--stdio",
            "--scenario",
            str(REPO / "events/scenarios/timeouts.json"),
        ],
        env={"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"},
    )


async def python_sdk_stdio(binary: str, data_dir: str):
    """The SDK's stdio client starts `selfbuild mcp --stdio` itself; no key: the local admin."""
    async with stdio_client(stdio_server(binary, data_dir)) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.server_info.name == "selfbuild", f"stdio server name: {init.server_info}")
            tools = await session.list_tools()
            check(len(tools.tools) == EXPECTED_TOOLS, f"stdio tools/list gave {len(tools.tools)}")
            status = await session.call_tool("get_system_status", {})
            check(not status.is_error, f"stdio get_system_status: {status}")
            check(status.structured_content["halt"]["on"] is False, f"stdio status: {status.structured_content}")
            halted = await session.call_tool("emergency_stop", {"reason": "stdio check"})
            check(not halted.is_error, f"stdio emergency_stop (the local admin): {halted}")
            resumed = await session.call_tool("resume", {})
            check(not resumed.is_error, f"stdio resume: {resumed}")
    print(f"python sdk over stdio: initialize, tools/list ({EXPECTED_TOOLS}), get_system_status, emergency_stop, resume ok")


def inspector_stdio(binary: str, data_dir: str):
    if not INSPECTOR.exists():
        raise SystemExit(f"MCP Inspector is missing ({INSPECTOR}); install it with: npm ci")
    command = [
        str(INSPECTOR), "--cli", binary, "--data-dir", data_dir, "mcp", "--stdio",
        "--scenario", str(REPO / "events/scenarios/timeouts.json"),
        "--method", "tools/call", "--tool-name", "list_agents",
    ]
    called = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    check(called.returncode == 0, f"inspector stdio exit {called.returncode}:\n{called.stdout}\n{called.stderr}")
    result = json.loads(called.stdout)
    check(not result.get("isError"), f"inspector stdio list_agents: {result}")
    print("inspector cli over stdio: tools/call list_agents ok")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(sys.argv[1], data_dir)
        try:
            asyncio.run(python_sdk(server.url))
            asyncio.run(json_rpc_errors(server.url))
            inspector(server.url)
        except AssertionError as e:
            print("\n".join(server.log[-40:]), file=sys.stderr)
            sys.exit(f"MCP client check failed: {e}")
        finally:
            server.stop()
    with tempfile.TemporaryDirectory() as data_dir:
        try:
            asyncio.run(python_sdk_stdio(sys.argv[1], data_dir))
            inspector_stdio(sys.argv[1], data_dir)
        except AssertionError as e:
            sys.exit(f"MCP client check over stdio failed: {e}")
    print("MCP clients: ok")


if __name__ == "__main__":
    main()
