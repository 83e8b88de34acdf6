"""Run by ``nox -s without_mcp``: ``opentelemetry-instrument`` in an environment without ``mcp``.

Not a pytest module (every pytest session has ``mcp``): it checks that our entry point is
registered, that the launcher's dependency check reports the missing ``mcp`` (so
it skips us), and that a real ``opentelemetry-instrument`` process runs the
program untouched.
"""

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

try:
    version("mcp")
    sys.exit("mcp is installed: this check needs an environment without it")
except PackageNotFoundError:
    pass

(entry_point,) = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "mcp_analytics"]
# What the launcher asks before it calls instrument(): the missing mcp is a conflict, so it skips us.
conflict = get_dist_dependency_conflicts(entry_point.dist)
assert conflict is not None and "mcp" in str(conflict), conflict
launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
done = subprocess.run(
    [launcher, sys.executable, "-c", "print('the application ran')"],
    env=env,
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
)
print(done.stdout, done.stderr, sep="\n")
assert done.returncode == 0, done.returncode
assert done.stdout.strip() == "the application ran"
assert "Traceback" not in done.stderr
assert "Instrumenting of mcp_analytics failed" not in done.stderr
print("without_mcp: 1 passed, 0 failed")
