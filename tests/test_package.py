"""How the package sits in an environment: import names, what importing costs, the entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files

import pytest

import opentelemetry_instrumentation_mcp


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    shown = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return set(json.loads(shown.stdout.splitlines()[-1]))


MACHINERY = {"opentelemetry.instrumentation.instrumentor", "wrapt", "opentelemetry_instrumentation_mcp.instrumentor"}


def test_the_exporter_and_the_registry_import_without_the_instrumentation_machinery():
    loaded = imported_after(
        "import opentelemetry.exporter.mcp_analytics\n"
        "from opentelemetry_instrumentation_mcp import attributes, __version__"
    )
    assert "opentelemetry.exporter.mcp_analytics.span_exporter" in loaded
    assert not loaded & MACHINERY


def test_the_analytics_api_imports_without_the_instrumentation_machinery():
    loaded = imported_after("import mcp_analytics.api, mcp_analytics.cli")
    assert "mcp_analytics.api" in loaded
    assert not loaded & MACHINERY


def test_the_public_names_load_on_first_use():
    loaded = imported_after("from opentelemetry_instrumentation_mcp import MCPInstrumentor")
    assert loaded >= MACHINERY
    for name in opentelemetry_instrumentation_mcp.__all__:
        assert getattr(opentelemetry_instrumentation_mcp, name) is not None
    assert set(opentelemetry_instrumentation_mcp.__all__) <= set(dir(opentelemetry_instrumentation_mcp))
    with pytest.raises(AttributeError, match="no_such_name"):
        opentelemetry_instrumentation_mcp.no_such_name  # noqa: B018 - the attribute access is the test


def test_the_entry_points_name_the_renamed_packages():
    (instrumentor,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "mcp_analytics"]
    (exporter,) = [e for e in entry_points(group="opentelemetry_traces_exporter") if e.name == "mcp_analytics"]
    assert instrumentor.load().__name__ == "MCPInstrumentor"
    assert exporter.value == "opentelemetry.exporter.mcp_analytics:MCPAnalyticsExporter"
    assert exporter.load().__module__ == "opentelemetry.exporter.mcp_analytics.span_exporter"


def test_a_project_folder_named_exporter_does_not_shadow_the_exporter(tmp_path):
    (tmp_path / "exporter").mkdir()
    (tmp_path / "exporter" / "__init__.py").write_text("raise ImportError('the user project of the same name')\n")
    shown = subprocess.run(
        [sys.executable, "-c", "from opentelemetry.exporter.mcp_analytics import install; print(install.__module__)"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert shown.stdout.strip() == "opentelemetry.exporter.mcp_analytics.span_exporter"


@pytest.mark.parametrize(
    "package", ["opentelemetry_instrumentation_mcp", "opentelemetry.exporter.mcp_analytics", "mcp_analytics"]
)
def test_each_package_says_it_is_typed(package):
    """PEP 561: the ``py.typed`` marker, so type checkers read the packages' annotations (the wheel ships it)."""
    assert files(package).joinpath("py.typed").is_file()
