# selfbuild's stand-in for Lambda's Python runtime: imports the handler's module from the
# package, calls it with the event and a minimal context, writes how it ended as JSON.
# Arguments: task dir, handler, event file, result file, function name, memory MB, timeout ms.
import importlib
import json
import os
import sys
import time
import traceback

TASK, HANDLER, EVENT, RESULT, NAME, MEMORY, TIMEOUT_MS = sys.argv[1:8]
STARTED = time.monotonic()


def finish(outcome):
    with open(RESULT, "w", encoding="utf-8") as out:
        json.dump(outcome, out)


def failure(kind, message, exc=None):
    lines = []
    if exc is not None:
        # Only the package's frames, as the runtime shows them (not this script's).
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if f.filename.startswith(TASK + os.sep)
        ]
        if frames:
            lines = ["Traceback (most recent call last):"]
            lines += "".join(traceback.format_list(frames)).rstrip("\n").split("\n")
    return {"error": {"type": kind, "message": message, "trace": lines}}


class Context:
    function_name = NAME
    function_version = "$LATEST"
    memory_limit_in_mb = int(MEMORY)
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + NAME
    log_group_name = "/aws/lambda/" + NAME
    log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis():
        return max(0, int(TIMEOUT_MS) - int((time.monotonic() - STARTED) * 1000))


def main():
    sys.path.insert(0, TASK)
    try:
        module_name, function_name = HANDLER.rsplit(".", 1)
    except ValueError:
        return failure(
            "Runtime.MalformedHandlerName",
            "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % HANDLER,
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as e:
        return failure(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, e),
        )
    except ImportError as e:
        return failure(
            "Runtime.ImportModuleError",
            "Unable to import module '%s': %s" % (module_name, e),
        )
    except Exception as e:
        return failure(type(e).__name__, str(e), e)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        return failure(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )
    with open(EVENT, encoding="utf-8") as f:
        event = json.load(f)
    try:
        result = handler(event, Context())
    except Exception as e:
        return failure(type(e).__name__, str(e), e)
    try:
        json.dumps(result)
    except (TypeError, ValueError) as e:
        return failure("Runtime.MarshalError", "Unable to marshal response: %s" % e)
    return {"ok": True}


finish(main())
