"""The relay alone in a fresh process, served the way Lambda's runtime serves it: import the app,
then one invocation at a time, each an event in and a result out. Run by ``bench/memory.py``:

    python bench/memory_child.py APP_DIR MEMORY_SIZE_MB

Protocol: one JSON line per invocation on stdin, ``{"handler": "api_handler" | <scheduled name>,
"event": {...}}``; one JSON line per answer on stdout, ``{"result": ..., "cpu_ms", "wall_ms",
"memory": {...}}`` (or ``{"error": traceback}``). The first line written says the app is imported.
The relay's own log lines (stdout in Lambda) go to stderr. ``memory`` is this process's resident
set: ``VmHWM`` (peak) and ``VmRSS`` (now) from /proc/self/status, and ``ru_maxrss``, in KiB."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """What Lambda passes as ``context`` (the attributes Powertools reads)."""

    def __init__(self, function_name: str, memory_mb: int, request_number: int) -> None:
        self.function_name = f"myna-relay-{function_name}"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:ap-northeast-1:123456789012:function:{self.function_name}"
        )
        self.aws_request_id = f"00000000-0000-4000-8000-{request_number:012d}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def memory() -> dict[str, int]:
    found = {"ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    found[f"{name}_kib"] = int(value.split()[0])
    except OSError:
        pass  # not Linux: ru_maxrss only
    return found


def main() -> int:
    app_dir, memory_mb = sys.argv[1], int(sys.argv[2])
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # the relay's log lines: stdout in Lambda, stderr here
    started = memory()
    sys.path.insert(0, app_dir)
    cpu, wall = time.process_time(), time.perf_counter()
    module: Any = __import__("app")
    imported = {
        "cpu_ms": (time.process_time() - cpu) * 1000,
        "wall_ms": (time.perf_counter() - wall) * 1000,
        "memory_at_start": started,
        "memory": memory(),
    }
    answers.write(json.dumps({"imported": imported}) + "\n")
    for number, line in enumerate(sys.stdin, start=1):
        request = json.loads(line)
        handler = request["handler"]
        target = module.app if handler == "api_handler" else module.app.handler_map[handler]
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            result = target(request["event"], LambdaContext(handler, memory_mb, number))
        except Exception:  # noqa: BLE001  # reported to the parent, which fails the benchmark
            answers.write(json.dumps({"error": traceback.format_exc()}) + "\n")
            continue
        answer = {
            "result": result,
            "cpu_ms": (time.process_time() - cpu) * 1000,
            "wall_ms": (time.perf_counter() - wall) * 1000,
            "memory": memory(),
        }
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
