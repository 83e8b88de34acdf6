"""Sessions: lint and type checks, and the suite against each supported ``mcp`` SDK line.

nox                      # every session
nox -s lint typecheck    # ruff (lint rules and formatting) and mypy, in a minute
nox -s "tests(mcp='2.3.0')"
nox -s phoenix           # end to end against a real Arize Phoenix (a heavy install)
nox -s clickhouse_current  # the ClickHouse store's statements on the current engine, in-process (chdb, 180 MB)
"""

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

MCP_VERSIONS = ["1.20.0", "1.30.0", "2.0.0", "2.3.0"]
OTEL = [
    "opentelemetry-api==1.45.1",
    "opentelemetry-sdk==1.45.1",
    "opentelemetry-exporter-otlp-proto-http==1.45.1",
    "opentelemetry-proto==1.45.1",
]
OTEL_CONTRIB = [
    "opentelemetry-instrumentation==0.66b1",
    "opentelemetry-semantic-conventions==0.66b1",
    "opentelemetry-test-utils==0.66b1",
    "opentelemetry-distro==0.66b1",
    "opentelemetry-instrumentation-asgi==0.66b1",
    "opentelemetry-instrumentation-httpx==0.66b1",
    "opentelemetry-exporter-prometheus==0.66b1",
]
# tests/phoenix needs arize-phoenix, installed only by the ``phoenix`` session: every other session leaves it out.
PHOENIX_TESTS = "tests/phoenix"
PHOENIX = "arize-phoenix==20.26.1"
# The ClickHouse store's tests start a ClickHouse server and do not depend on the mcp SDK: run by one session only.
CLICKHOUSE_TESTS = ["tests/test_analytics_clickhouse.py", "tests/test_rollups_clickhouse.py"]
# Nor do these (the DuckDB store, its rollups, the alert rules, the duplicate filter, the Prometheus rules: none
# imports mcp or the instrumentation): run by the latest session only, as the ClickHouse tests.
MCP_FREE_TESTS = [
    "tests/test_analytics_store.py",
    "tests/test_rollups.py",
    "tests/test_alerts.py",
    "tests/test_recent_ids.py",
    "tests/test_prometheus_rules.py",
]
# The current ClickHouse engine in-process: a 180 MB wheel, installed only by the ``clickhouse_current`` session.
CHDB = ["chdb==4.4.0", "chdb-core==26.9.0"]
RUFF = "ruff==0.17.6"
MYPY = ["mypy==2.4.1", "types-protobuf==7.35.1.20261122"]


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff's rules (the set in pyproject.toml) and its formatter, which must have nothing to change."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy on the three packages (configured in pyproject.toml) against the latest mcp and the tests' pins; then
    the adapter for mcp 1.x, which that run leaves out, against the latest 1.x (other modules followed silently)."""
    session.install("-e", ".[analytics,clickhouse,exporter,test]", "mcp==2.3.0", *OTEL, *OTEL_CONTRIB, *MYPY)
    session.run("mypy", *session.posargs)
    session.install("mcp==1.30.0")
    v1 = sorted(str(path) for path in Path("opentelemetry_instrumentation_mcp/adapters/v1").glob("*.py"))
    session.run("mypy", "--follow-imports=silent", "--no-warn-unused-configs", *v1)


@nox.session(python="3.11")
@nox.parametrize("mcp", MCP_VERSIONS)
def tests(session: nox.Session, mcp: str) -> None:
    # mcp 1.20 predates pydantic 2.12, which removed an internal helper it imports.
    extra = ["pydantic<2.12"] if mcp == "1.20.0" else []
    # The latest of each line also installs the exporter's optional orjson; the others test its stdlib fallback.
    extras = "test,analytics,exporter" if mcp in ("1.30.0", "2.3.0") else "test,analytics"
    extras += ",clickhouse" if mcp == MCP_VERSIONS[-1] else ""  # the session that runs the ClickHouse tests
    session.install("-e", f".[{extras}]", f"mcp=={mcp}", *OTEL, *OTEL_CONTRIB, *extra)
    ignored = [f"--ignore={PHOENIX_TESTS}"] + (
        [f"--ignore={t}" for t in CLICKHOUSE_TESTS + MCP_FREE_TESTS] if mcp != MCP_VERSIONS[-1] else []
    )
    session.run("pytest", "-q", "-p", "no:cacheprovider", *ignored, *session.posargs)


@nox.session(python="3.11", venv_backend="uv")
def fastmcp(session: nox.Session) -> None:
    """The suite with the fastmcp framework installed (on the latest mcp 2.x it requires).

    Always uv (``pip install nox uv``): fastmcp asks for a certifi newer than the registry serves, which only
    uv's ``--override`` sets aside."""
    overrides = "tests/requirements/fastmcp-overrides.txt"
    session.install(
        "--override", overrides, "-e", ".[test,analytics]", "mcp==2.3.0", "fastmcp==4.1.6", *OTEL, *OTEL_CONTRIB
    )
    session.run("pytest", "-q", "-p", "no:cacheprovider", f"--ignore={PHOENIX_TESTS}",
                *[f"--ignore={t}" for t in CLICKHOUSE_TESTS + MCP_FREE_TESTS], *session.posargs)  # fmt: skip


@nox.session(python="3.11")
def without_mcp(session: nox.Session) -> None:
    """Zero-code startup where ``mcp`` is not installed: the instrumentation is skipped cleanly."""
    session.install("-e", ".", *OTEL, *OTEL_CONTRIB)
    session.run("python", "tests/check_without_mcp.py")


@nox.session(python="3.11")
def phoenix(session: nox.Session) -> None:
    """End to end: an instrumented stdio server and client export over OTLP/HTTP to a real Arize Phoenix,
    and the spans are read back through Phoenix's own API."""
    session.install("-e", ".[test]", "mcp==2.3.0", PHOENIX, *OTEL, *OTEL_CONTRIB)
    # arize-phoenix-client's pytest plugin (Phoenix experiments from tests) is not used: left unloaded.
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-p", "no:phoenix", PHOENIX_TESTS, *session.posargs)


@nox.session(python="3.11")
def clickhouse_current(session: nox.Session) -> None:
    """The ClickHouse store's very statements on the current ClickHouse engine (chdb, in-process), beside the
    ``tests`` sessions' real clickhouse-server 18.16: every panel, session and timeline as DuckDB answers them."""
    session.install("-e", ".[test,analytics,clickhouse]", "mcp==2.3.0", *CHDB, *OTEL, *OTEL_CONTRIB)
    session.run("pytest", "-q", "-p", "no:cacheprovider", *CLICKHOUSE_TESTS, "-k", "chdb",
                *session.posargs)  # fmt: skip
