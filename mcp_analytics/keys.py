"""Project API keys: each key writes and reads exactly one project.

Given on the command line (``--api-key project=key``) or in
``MCP_ANALYTICS_API_KEYS`` (``project=key,other=key2``). Only digests are kept.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable

ENV_KEYS = "MCP_ANALYTICS_API_KEYS"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return "mcpa_" + secrets.token_urlsafe(24)


class ApiKeys:
    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._projects: dict[bytes, str] = {}
        for project, key in pairs:
            self.add(project, key)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> ApiKeys:
        """``project=key`` items, from the command line and then ``MCP_ANALYTICS_API_KEYS``."""
        items = [*specs, *filter(None, os.environ.get(ENV_KEYS, "").split(","))]
        pairs: dict[str, str] = {}
        for item in items:
            project, sep, key = item.strip().partition("=")
            if not (sep and project and key):
                raise ValueError(f"an API key is given as project=key, not {item!r}")
            if key in pairs:  # never silently keep one of two: the key is not shown, the projects are
                raise ValueError(f"the same API key is given twice (projects {pairs[key]!r} and {project!r})")
            pairs[key] = project
        return cls((project, key) for key, project in pairs.items())

    def add(self, project: str, key: str) -> None:
        self._projects[_digest(key)] = project

    def project(self, key: str | None) -> str | None:
        return self._projects.get(_digest(key)) if key else None

    def __len__(self) -> int:
        return len(self._projects)
