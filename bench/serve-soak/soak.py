#!/usr/bin/env python3
"""Bursts of concurrent MCP tool calls against a running `selfbuild serve`, then half-open
connections; prints a Markdown results table. Python standard library only.

After each burst it waits `--settle` seconds (longer than tokio's 10 s blocking-thread keep-alive)
and reads the server's VmRSS, thread count and open descriptors from /proc/<pid>/status; during the
burst it samples them every 20 ms for the peak.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time


def proc_status(pid):
    """(VmRSS in MiB, threads, open fds) of `pid`."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb / 1024, threads, fds


class Peak(threading.Thread):
    """Samples the server every 20 ms until stopped; keeps the largest RSS and thread count."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.rss, self.threads = pid, 0.0, 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            rss, threads, _ = proc_status(self.pid)
            self.rss, self.threads = max(self.rss, rss), max(self.threads, threads)
            time.sleep(0.02)

    def stop(self):
        self.stopped.set()
        self.join()


def request_bytes(host, port, key, call_id):
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": call_id,
            "method": "tools/call",
            "params": {"name": "list_agents", "arguments": {}},
        }
    ).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\n"
        "MCP-Protocol-Version: 2025-06-18\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


async def one_call(host, port, key, call_id, timeout):
    """One tools/call on its own connection; True when answered 200 without isError."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(request_bytes(host, port, key, call_id))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        return answer.startswith(b"HTTP/1.1 200") and b'"isError":true' not in answer
    except (OSError, asyncio.TimeoutError):
        return False


async def burst(host, port, key, concurrency, timeout):
    calls = [one_call(host, port, key, i, timeout) for i in range(concurrency)]
    return await asyncio.gather(*calls)


def half_open(host, port, pid, count, wait):
    """Opens `count` connections that send part of a header and nothing more; after `wait`
    seconds counts those the server has closed."""
    fds_before = proc_status(pid)[2]
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port))
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    time.sleep(0.5)
    fds_open = proc_status(pid)[2]
    time.sleep(wait)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(4096) == b"":
                closed += 1
        except BlockingIOError:
            pass  # still open, nothing sent
        except ConnectionResetError:
            closed += 1
        s.close()
    fds_after = proc_status(pid)[2]
    return fds_before, fds_open, fds_after, closed


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--key", default=os.environ.get("SELFBUILD_BENCH_KEY"))
    p.add_argument("--bursts", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--settle", type=float, default=12.0)
    p.add_argument("--half-open", type=int, default=200)
    p.add_argument("--half-open-wait", type=float, default=35.0)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()

    rows = []
    rss0, threads0, _ = proc_status(a.pid)
    for n in range(1, a.bursts + 1):
        peak = Peak(a.pid)
        peak.start()
        started = time.monotonic()
        results = asyncio.run(burst(a.host, a.port, a.key, a.concurrency, a.timeout))
        took = time.monotonic() - started
        peak.stop()
        time.sleep(a.settle)
        rss, threads, fds = proc_status(a.pid)
        ok = sum(results)
        row = (n, ok, len(results) - ok, took, peak.threads, peak.rss, threads, rss, fds)
        rows.append(row)
        print(
            f"burst {n}: {ok} ok, {len(results) - ok} failed, {took:.1f} s; peak {peak.threads} "
            f"threads, {peak.rss:.1f} MiB; idle {threads} threads, {rss:.1f} MiB, {fds} fds",
            file=sys.stderr,
        )

    print(f"Before the first burst: {rss0:.1f} MiB RSS, {threads0} threads.")
    print()
    print(
        "| burst | calls ok | failed | burst s | peak threads | peak RSS MiB "
        "| idle threads | idle RSS MiB | open fds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]} | {r[5]:.1f} "
            f"| {r[6]} | {r[7]:.1f} | {r[8]} |"
        )
    if len(rows) >= 4:
        # The first half warms up (allocator arenas, SQLite's page cache); the second must
        # stay flat.
        half = rows[len(rows) // 2 :]
        idle = [r[7] for r in half]
        growth = half[-1][7] - half[0][7]
        print()
        print(
            f"Idle RSS over bursts {half[0][0]}–{half[-1][0]}: {min(idle):.1f} to "
            f"{max(idle):.1f} MiB, {growth:+.1f} MiB from first to last "
            f"({growth / (len(half) - 1):+.2f} MiB per burst)."
        )
    if a.half_open:
        before, opened, after, closed = half_open(
            a.host, a.port, a.pid, a.half_open, a.half_open_wait
        )
        print()
        print(
            f"Half-open connections: {a.half_open} opened, each sending part of a request "
            f"header and nothing more; server fds {before} before, {opened} with them open, "
            f"{after} after {a.half_open_wait:.0f} s; {closed} of {a.half_open} closed by the "
            "server."
        )
    failed = sum(r[2] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
