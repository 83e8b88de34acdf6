"""The current ClickHouse engine in-process (the ``chdb`` package) behind the one method of ``clickhouse_driver``'s
``Client`` that ``ClickHouseStore`` calls, so that the store's very statements run on a current release too.

Parameters are substituted by ``clickhouse_driver`` itself, as it does before sending a query to a server.
"""

from __future__ import annotations

import json
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.util.escape import escape_param

from mcp_analytics.clickhouse_store import _SETTINGS, ClickHouseStore


class ChdbClient:
    """``execute`` as ``clickhouse_driver.Client`` answers it (rows, and column names and types on request), over a
    chdb session set up as the store sets up its connections (``_SETTINGS``); 64-bit integers come back as numbers."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._escaper = Client("127.0.0.1")  # never connects: only its parameter substitution is used
        for name, value in {**_SETTINGS, "output_format_json_quote_64bit_integers": 0}.items():
            session.query(f"SET {name} = {value}")

    def execute(self, sql: str, params: Any = None, *, with_column_types: bool = False, columnar: bool = False) -> Any:
        context = self._escaper.connection.context
        if sql.rstrip().upper().endswith("VALUES"):  # an insert of rows, given as data
            rows = list(zip(*params, strict=True)) if columnar else params
            values = ", ".join("(" + ", ".join(str(escape_param(v, context)) for v in row) + ")" for row in rows)
            self._query(f"{sql} {values}")
            return None
        if params:
            sql = self._escaper.substitute_params(sql, params, context)
        is_select = sql.lstrip().upper().startswith(("SELECT", "WITH"))
        answer = self._query(sql, "JSONCompact" if is_select else "CSV")
        if not is_select:
            return []
        found = json.loads(answer or "{}")
        rows = [tuple(row) for row in found.get("data", [])]
        if with_column_types:
            return rows, [(column["name"], column["type"]) for column in found.get("meta", [])]
        return rows

    def _query(self, sql: str, output: str = "CSV") -> str:
        return str(self.session.query(sql, output).data())

    def disconnect(self) -> None:
        pass


class ChdbStore(ClickHouseStore):
    """``ClickHouseStore`` on one in-process chdb session (its ``host`` and ``port`` are not used)."""

    def __init__(self, session: Any, database: str, **options: Any) -> None:
        self._session = session
        super().__init__(f"clickhouse://127.0.0.1/{database}", **options)

    def _connect(self, database: str | None, timeout: float | None = None) -> Any:
        if database:
            self._session.query(f"USE {database}")
        return ChdbClient(self._session)
