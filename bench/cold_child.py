"""One cold start, as Lambda does it: a fresh interpreter imports the handler module (the Init
phase), then calls ``module.app(event, context)`` once with an API Gateway proxy event (the first
Invoke). Run as a script by ``bench/cold_start.py``:

    python bench/cold_child.py APP_DIR MODULE EVENT_JSON MEMORY_SIZE_MB

It prints one line ``BENCH-RESULT {json}``: ``perf_counter`` readings (CLOCK_MONOTONIC on Linux,
so the parent can compare them with its own) at the top of this script, before and after the
import, and after the first request, the process's CPU time (``process_time``) at the same points,
and the response's status. Nothing else is imported before
the first reading."""

import time

T_TOP = time.perf_counter()
CPU_TOP = time.process_time()

import json  # noqa: E402  # after the first reading, on purpose
import sys  # noqa: E402


class LambdaContext:
    """What Lambda passes as ``context`` (the attributes Powertools reads)."""

    function_name = "bench-cold-start"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024  # replaced by the configured size (argv)
    invoked_function_arn = "arn:aws:lambda:ap-northeast-1:123456789012:function:bench-cold-start"
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/bench-cold-start"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> int:
    app_dir, module_name, event_json = sys.argv[1:4]
    LambdaContext.memory_limit_in_mb = int(sys.argv[4])
    event = json.loads(event_json)
    sys.path.insert(0, app_dir)
    t_import, cpu_import = time.perf_counter(), time.process_time()
    module = __import__(module_name)
    t_imported, cpu_imported = time.perf_counter(), time.process_time()
    response = module.app(event, LambdaContext())
    t_served, cpu_served = time.perf_counter(), time.process_time()
    result = {
        "top": T_TOP,
        "import_start": t_import,
        "imported": t_imported,
        "served": t_served,
        "cpu_top": CPU_TOP,
        "cpu_import_start": cpu_import,
        "cpu_imported": cpu_imported,
        "cpu_served": cpu_served,
        "status": response["statusCode"],
        "modules": len(sys.modules),
    }
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
