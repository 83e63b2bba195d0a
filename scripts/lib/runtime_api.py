"""A local stand-in for Lambda's Runtime API: the environment Lambda gives a provided.al2023
function, and one invocation of a bootstrap (start, first `next`, one event, its answer).

Used by scripts/bench-cold-start (init timing) and scripts/build-arm64 (aarch64 bootstraps under
qemu-user). Stdlib only.

  python3 scripts/lib/runtime_api.py invoke-once FUNCTION BINARY [--runner CMD] [--event JSON]
"""

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

NEXT = b"GET /2018-06-01/runtime/invocation/next "
REGION = "us-east-1"
ACCOUNT = "123456789012"
MEMORY_MB = {"analyze": "512"}  # infra/template.yaml; the rest use the Globals' 256


def lambda_env(function, extra=None):
    """The environment Lambda gives a provided.al2023 function (infra/template.yaml's Globals
    plus the function's own variables), with fake credentials. Nothing is inherited from the
    caller's environment, so a stray AWS_ENDPOINT_URL or profile cannot change the result.
    AWS_LAMBDA_RUNTIME_API is added per start."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": f"selfbuild-{function}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB.get(function, "256"),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/selfbuild-{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]00000000000000000000000000000000",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "bench-session-token",
        "TABLE_NAME": "selfbuild",
    }
    if function in ("alarm-intake", "mcp"):
        env["STATE_MACHINE_ARN"] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:selfbuild-improvement-cycle"
    if function == "mcp":
        env["API_KEYS_SECRET_ID"] = "selfbuild/api-keys"
    env.update(extra or {})
    return env


def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock




# An event each function answers without reaching AWS: the MCP endpoint refuses a call without a
# Bearer key (401); the others refuse an empty payload with their typed error.
FUNCTION_URL_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/mcp",
    "rawQueryString": "",
    "headers": {"content-type": "application/json", "host": "local.lambda-url.us-east-1.on.aws"},
    "requestContext": {
        "accountId": ACCOUNT, "apiId": "local", "domainName": "local.lambda-url.us-east-1.on.aws",
        "domainPrefix": "local", "requestId": "runtime-api-1", "routeKey": "$default",
        "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000,
        "http": {"method": "POST", "path": "/mcp", "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "runtime_api.py"},
    },
    "body": json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    "isBase64Encoded": False,
}


def default_event(function):
    """The event `invoke_once` sends `function` unless told otherwise."""
    return FUNCTION_URL_EVENT if function == "mcp" else {}


class HttpConnection:
    """One Runtime API connection: bytes in, complete requests out (keep-alive, Content-Length
    bodies; the runtime client sends no chunked bodies)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def requests(self):
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or "0")
            if len(rest) < length:
                return
            self.buf = rest[length:]
            method, _, rest_of_line = lines[0].partition(" ")
            path = rest_of_line.rsplit(" ", 1)[0]
            yield method, path, rest[:length]


def respond(sock, status, body=b"", headers=()):
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}"] + list(headers)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def invoke_once(argv, env, event, timeout_s=120.0):
    """Starts argv as a Lambda bootstrap against a local Runtime API, answers its first `next`
    with `event`, and waits for its response or error. Returns a dict: `next_after_s` (seconds
    from spawn to the first poll), `answer` ("response" | "error" | None), `status` (the
    response's statusCode, if any), `body` (the answer, parsed when JSON), `failure` (why no
    answer), `log` (the process's output). AWS_ENDPOINT_URL points at a closed port, so a call
    to AWS fails at once instead of leaving the machine."""
    api = listener()
    port = api.getsockname()[1]
    closed = listener()  # bound, then closed: nothing listens on it
    closed_port = closed.getsockname()[1]
    closed.close()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}")
    request_id = "8f507cfc-b9a4-4ae5-9a77-2bd7a3d2c8a1"
    result = {"next_after_s": None, "answer": None, "status": None, "body": None,
              "failure": None, "log": ""}
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        api.close()
        result["failure"] = f"could not start {argv[0]}: {e}"
        return result
    conns = {}
    output = bytearray()
    deadline = t0 + timeout_s
    try:
        while result["answer"] is None and result["failure"] is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result["failure"] = f"no answer within {timeout_s:.0f} s"
                break
            ready, _, _ = select.select([api, proc.stdout] + list(conns), [], [], min(remaining, 0.1))
            for sock in ready:
                if sock is api:
                    conn, _ = api.accept()
                    conns[conn] = HttpConnection(conn)
                    continue
                if sock is proc.stdout:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    output.extend(chunk[: max(0, 1_000_000 - len(output))])
                    continue
                data = sock.recv(65536)
                if not data:
                    sock.close()
                    del conns[sock]
                    continue
                conn = conns[sock]
                conn.buf += data
                for method, path, body in conn.requests():
                    if method == "GET" and path.endswith("/runtime/invocation/next"):
                        if result["next_after_s"] is None:
                            result["next_after_s"] = time.monotonic() - t0
                            deadline_ms = int((time.time() + 60) * 1000)
                            respond(sock, "200 OK", json.dumps(event).encode(), [
                                "content-type: application/json",
                                f"lambda-runtime-aws-request-id: {request_id}",
                                f"lambda-runtime-deadline-ms: {deadline_ms}",
                                "lambda-runtime-invoked-function-arn: "
                                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{env.get('AWS_LAMBDA_FUNCTION_NAME', 'f')}",
                                "lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000;Sampled=0",
                            ])
                        # A second poll waits unanswered: the run ends with the first answer.
                    elif method == "POST" and path.endswith(f"/invocation/{request_id}/response"):
                        result["answer"] = "response"
                        result["body"] = parse_json(body)
                        if isinstance(result["body"], dict):
                            result["status"] = result["body"].get("statusCode")
                        respond(sock, "202 Accepted")
                    elif method == "POST" and path.endswith(f"/invocation/{request_id}/error"):
                        result["answer"] = "error"
                        result["body"] = parse_json(body)
                        respond(sock, "202 Accepted")
                    elif method == "POST" and path.endswith("/runtime/init/error"):
                        result["failure"] = f"init error: {body[:500].decode('utf-8', 'replace')}"
                        respond(sock, "202 Accepted")
                    else:
                        respond(sock, "404 Not Found")
            if result["answer"] is None and result["failure"] is None and proc.poll() is not None:
                result["failure"] = f"exited with status {proc.returncode} before answering"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        rest = proc.stdout.read() or b""
        output.extend(rest[: max(0, 1_000_000 - len(output))])
        for sock in conns:
            sock.close()
        api.close()
    result["log"] = output.decode("utf-8", "replace")
    return result


def parse_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def summary(result):
    """One line for a results table: whether the bootstrap started and how it answered."""
    if result["answer"] == "response":
        return f"started; answered: response, statusCode {result['status']}"
    if result["answer"] == "error":
        body = result["body"] if isinstance(result["body"], dict) else {}
        return f"started; answered: error {body.get('errorType', '?')}"
    if result["next_after_s"] is not None:
        return f"started, **no answer**: {result['failure']}"
    return f"**did not start**: {result['failure']}"


def main():
    parser = argparse.ArgumentParser(description="One invocation of a Lambda bootstrap against a local Runtime API.")
    sub = parser.add_subparsers(dest="command", required=True)
    once = sub.add_parser("invoke-once", help="start, first `next`, one event, its answer (JSON on stdout)")
    once.add_argument("function", help="the function's name in functions/ (sets its environment)")
    once.add_argument("binary")
    once.add_argument("--runner", default="", help="a command to run the binary with, e.g. qemu-aarch64-static")
    once.add_argument("--event", help="the event as JSON (default: one the function answers without AWS)")
    once.add_argument("--timeout", type=float, default=120.0)
    once.add_argument("--summary", action="store_true", help="print one line instead of the JSON result")
    args = parser.parse_args()
    event = json.loads(args.event) if args.event else default_event(args.function)
    argv = args.runner.split() + [os.path.abspath(args.binary)]
    result = invoke_once(argv, lambda_env(args.function), event, args.timeout)
    if args.summary:
        print(summary(result))
        if not result["answer"]:
            print(result["log"][-2000:], file=sys.stderr)
    else:
        json.dump(result, sys.stdout)
        print()
    sys.exit(0 if result["answer"] else 1)


if __name__ == "__main__":
    main()
