"""``mcp-analytics``: serve the API, print the report, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import urllib.error
from typing import Any

from mcp_analytics import report
from mcp_analytics.alerts import Engine, Rules
from mcp_analytics.duckdb_store import DEFAULT_MEMORY_LIMIT
from mcp_analytics.keys import ApiKeys, new_key
from mcp_analytics.server import DEFAULT_HOST, DEFAULT_PORT
from mcp_analytics.store import BYTES_PER_TOKEN, DEFAULT_TIERS, DEFAULT_TOKEN_PRICE, Prices, Slos, StoreUnavailable
from opentelemetry_instrumentation_mcp import env
from opentelemetry_instrumentation_mcp.version import __version__

ENV_DB = "MCP_ANALYTICS_DB"
ENV_MEMORY = "MCP_ANALYTICS_MEMORY_LIMIT"
ENV_TIMEOUT = "MCP_ANALYTICS_SESSION_TIMEOUT"
ENV_RETENTION = "MCP_ANALYTICS_RETENTION"
ENV_STORE = "MCP_ANALYTICS_STORE"
ENV_ALERT_EVALUATION = "MCP_ANALYTICS_ALERT_EVALUATION"
DEFAULT_DB = "mcp-analytics.duckdb"
DEFAULT_PROJECT = "default"


def _serve(args: argparse.Namespace) -> int:
    from mcp_analytics.api import create_app
    from mcp_analytics.duckdb_store import DuckDBStore
    from mcp_analytics.server import foreground

    evaluate_alerts = env.flag(ENV_ALERT_EVALUATION, True) if args.alert_evaluation is None else args.alert_evaluation
    if args.alert_webhook and not evaluate_alerts:
        raise ValueError("--alert-webhook is called only where alerts are evaluated: give the webhooks to the "
                         "instance that evaluates them, or drop --no-alert-evaluation")  # fmt: skip
    keys = ApiKeys.parse(args.api_key)
    if not keys:
        key = new_key()
        keys.add(DEFAULT_PROJECT, key)
        print(f"no API key given: project {DEFAULT_PROJECT!r} has the key {key} until this server stops")
    prices = Prices.parse(args.token_price, args.tool_price)
    slos = Slos.parse(_json_file(args.slo_config), args.slo_tier, args.slo_tool, args.slo_objective)
    store: Any
    unreachable = None
    where = args.store or args.db
    if where.startswith("clickhouse://"):
        from mcp_analytics.clickhouse_store import ClickHouseStore

        # The driver logs each failed connection with its traceback: while ClickHouse is down, one per request.
        # The API logs the outage once, when it begins and when it ends.
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
        store = ClickHouseStore(where, session_timeout=args.session_timeout, prices=prices, slos=slos, connect=False)
        where = store.path  # without the password
        try:
            store.check()  # creates or migrates the schema; a newer one (SchemaTooNew) stops here
        except StoreUnavailable as error:  # served anyway: 503 on the store's routes until it is reachable
            unreachable = error
    else:
        where = _duckdb_path(where)
        store = DuckDBStore(where, memory_limit=args.memory_limit, session_timeout=args.session_timeout,
                            prices=prices, slos=slos)  # fmt: skip
    url = f"http://{args.host}:{args.port}"
    print(f"MCP analytics API on {url} (store {where}, OpenAPI at {url}/docs); dashboard at {url}/", flush=True)
    try:
        engine = Engine(store, Rules.parse(args.alert_rule), args.alert_webhook)
        app = create_app(store, keys, retention=args.retention, alerts=engine, alert_interval=args.alert_interval,
                         evaluate_alerts=evaluate_alerts, unreachable=unreachable)  # fmt: skip
        foreground(app, args.host, args.port)
    finally:
        store.close()
    return 0


def _duckdb_path(store: str) -> str:
    """The DuckDB file of ``--store duckdb:///path/file.duckdb`` (``duckdb:///relative.duckdb`` is relative to the
    working directory, ``duckdb:////abs/file.duckdb`` absolute), or of ``--db``'s plain path."""
    if "://" not in store:
        return store
    scheme, _, path = store.partition("://")
    if scheme != "duckdb" or not path.startswith("/") or len(path) < 2:
        raise ValueError(f"a store is duckdb:///path/file.duckdb or clickhouse://host:port/database, not {store!r}")
    return path[1:]


def _json_file(path: str | None) -> dict[str, object] | None:
    """A JSON object from a file (a configuration); ValueError, which the CLI reports, when it is not one."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            found = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path}: not a JSON object")
    return found


def _duration(text: str) -> object:
    from mcp_analytics.store import duration

    try:
        return duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text!r} (--no-alert-evaluation turns "
                                         "evaluation off)")  # fmt: skip
    return seconds


def _report(args: argparse.Namespace) -> int:
    from mcp_analytics.store import DIMENSIONS, Slice

    try:
        slice = Slice.parse({name: getattr(args, name) for name in DIMENSIONS if getattr(args, name)})
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if args.url:
        if not args.api_key:
            print("--url needs --api-key (the project's key)", file=sys.stderr)
            return 2
        fetch = report.from_api(args.url, args.api_key, args.last, args.limit, slice)
        title = f"MCP analytics: {args.url}, last {args.last}"
    else:
        from mcp_analytics.duckdb_store import DuckDBStore
        from mcp_analytics.store import Window

        store: Any
        where = args.store or args.db
        if where.startswith("clickhouse://"):
            from mcp_analytics.clickhouse_store import ClickHouseStore

            store = ClickHouseStore(where)
            where = store.path
        else:
            where = _duckdb_path(where)
            if not os.path.exists(where):
                print(f"no store at {where} (give --db, or --url and --api-key of a running API)", file=sys.stderr)
                return 2
            store = DuckDBStore(where)
        projects = store.projects()
        if args.project not in projects:
            store.close()
            held = f"its projects: {', '.join(projects)}" if projects else "it holds no events"
            print(f"no events of project {args.project!r} in {where} ({held}); give --project", file=sys.stderr)
            return 2
        fetch = report.from_store(store, args.project, Window.parse(last=args.last), args.limit, slice)
        title = f"MCP analytics: project {args.project} in {where}, last {args.last}"
    if slice:
        title += "; " + ", ".join(f"{name} {values}" for name, values in slice.query().items())
    print(report.render(fetch, title))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mcp_analytics.demo import run

    return run(db=args.db, port=args.port, keep_serving=args.keep_serving)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mcp-analytics", description="Serve the MCP analytics API and dashboard, print "
                                   "the report from a store or a running API, or run the demo.")  # fmt: skip
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    db = os.environ.get(ENV_DB, DEFAULT_DB)

    serve = commands.add_parser("serve", help="run the analytics API and dashboard")
    serve.add_argument("--db", default=db, help=f"DuckDB file (default {db}; env {ENV_DB})")
    serve.add_argument("--store", default=os.environ.get(ENV_STORE) or None, metavar="URL",
                       help="where events are stored: duckdb:///path/file.duckdb (as --db) or "
                            "clickhouse://[user:password@]host:port/database, shared by any number of API instances "
                            "(user and password also from MCP_ANALYTICS_CLICKHOUSE_USER and _PASSWORD; "
                            f"env {ENV_STORE}; overrides --db)")  # fmt: skip
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--api-key", action="append", default=[], metavar="PROJECT=KEY",
                       help="a project and its key (repeatable; also MCP_ANALYTICS_API_KEYS=p1=k1,p2=k2)")  # fmt: skip
    serve.add_argument("--memory-limit", default=os.environ.get(ENV_MEMORY, DEFAULT_MEMORY_LIMIT),
                       help=f"DuckDB's memory limit, its cache included (default {DEFAULT_MEMORY_LIMIT}; env {ENV_MEMORY})")  # fmt: skip
    serve.add_argument("--session-timeout", type=_duration, default=os.environ.get(ENV_TIMEOUT, "30m"),
                       help="the inactivity that ends a session: 30m, 2h, … (default 30m; env MCP_ANALYTICS_SESSION_TIMEOUT)")  # fmt: skip
    serve.add_argument("--retention", type=_duration, default=os.environ.get(ENV_RETENTION) or None,
                       help="delete events older than this: 30d, 12h, … (checked at start and hourly; default: keep "
                            "everything; env MCP_ANALYTICS_RETENTION)")  # fmt: skip
    serve.add_argument("--token-price", type=float, default=None, metavar="USD",
                       help=f"the cost panel's estimate: USD per million tokens of tool responses (default "
                            f"{DEFAULT_TOKEN_PRICE}; about {BYTES_PER_TOKEN} bytes a token)")  # fmt: skip
    serve.add_argument(
        "--tool-price",
        action="append",
        default=[],
        metavar="TOOL=USD",
        help="one tool's own price per million tokens (repeatable)",
    )
    tiers = ", ".join(f"{name} {ms:g} ms" for name, ms in DEFAULT_TIERS.items())
    serve.add_argument("--slo-config", metavar="FILE",
                       help='latency SLOs as JSON: {"objective": 0.95, "tiers": {"light": 300, ...}, '
                            '"tools": {"search_*": "light", ...}}')  # fmt: skip
    serve.add_argument(
        "--slo-tier",
        action="append",
        default=[],
        metavar="NAME=MS",
        help=f"a tier's p95 target (repeatable; default tiers: {tiers})",
    )
    serve.add_argument("--slo-tool", action="append", default=[], metavar="PATTERN=TIER",
                       help="tools matching a shell-style pattern in a tier (repeatable; first match wins; others "
                            "go to the fastest tier that holds their p95 over the last 7 days)")  # fmt: skip
    serve.add_argument(
        "--slo-objective",
        type=float,
        default=None,
        metavar="SHARE",
        help="the share of calls within target each tool must reach (default 0.95)",
    )
    serve.add_argument("--alert-webhook", action="append", default=[], metavar="URL",
                       help="POST every alert that starts firing or resolves here, as JSON with a Slack-style `text` "
                            "(repeatable; alerts are evaluated and listed at /v1/alerts without one too)")  # fmt: skip
    serve.add_argument(
        "--alert-interval",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how often the alert rules are evaluated (default 60)",
    )
    serve.add_argument("--alert-evaluation", action=argparse.BooleanOptionalAction,
                       help="evaluate the alert rules here, at start and every --alert-interval, and call the "
                            "webhooks (default). --no-alert-evaluation: never, for every instance but one of a fleet "
                            "on one ClickHouse database (two evaluating at once could open an episode twice); "
                            f"/v1/alerts still lists what the evaluating one recorded (env {ENV_ALERT_EVALUATION}=0)"
                       )  # fmt: skip
    serve.add_argument(
        "--alert-rule",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a rule's threshold, e.g. volume_factor=4, error_ratio=0.1 (repeatable)",
    )
    serve.set_defaults(run=_serve)

    rep = commands.add_parser("report", help="print the panels as tables, from a store file or a running API")
    rep.add_argument("--db", default=db, help="the store file (when the API is not running)")
    rep.add_argument("--store", metavar="URL", help="the store as serve takes it: duckdb:///file or clickhouse://…")
    rep.add_argument("--project", default=DEFAULT_PROJECT)
    rep.add_argument("--url", help="a running API instead of a file, e.g. http://127.0.0.1:8765")
    rep.add_argument("--api-key", help="the project's key, with --url")
    rep.add_argument("--last", default="24h", help="the window: 15m, 24h, 7d, … or all")
    rep.add_argument("--limit", type=int, default=20, help="rows per table")
    for name, example in (("tool", "search"), ("client", "Cursor"), ("user", "alice"), ("server", "github"),
                          ("method", "tools/call"), ("origin", "server")):  # fmt: skip
        rep.add_argument(f"--{name}", action="append", metavar=name.upper(),
                         help=f"only the events of this {name} (repeatable or comma-separated, e.g. {example})")  # fmt: skip
    rep.set_defaults(run=_report)

    demo = commands.add_parser("demo", help="the API, an instrumented MCP server and scripted agents, then the report")
    demo.add_argument("--db", default=os.path.join(".mcp-analytics", "demo.duckdb"), help="recreated on each run")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT, help="the API's port (a free one if taken)")
    demo.add_argument("--keep-serving", action=argparse.BooleanOptionalAction, default=None,
                      help="keep the API and dashboard up after the report (default: when run in a terminal)")  # fmt: skip
    demo.set_defaults(run=_demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:  # a malformed key or window
        print(f"mcp-analytics: {error}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:  # report --store clickhouse://… while ClickHouse is down
        print(f"mcp-analytics: the store is unreachable: {error}", file=sys.stderr)
        return 1
    except urllib.error.HTTPError as error:
        print(f"mcp-analytics: the API answered {error.code}: {error.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"mcp-analytics: cannot reach the API: {error.reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
