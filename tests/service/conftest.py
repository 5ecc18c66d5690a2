"""Fixtures: one hub per test, on each backend (embedded; PostgreSQL + RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sql.store import SqlStore
from adapters.sqlite_store import SqliteStore
from hub.http import app
from tests.logged import record_logs
from tests.service import harness
from tests.service.harness import HubUnderTest


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("pki")
    return root, harness.make_pki(root)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A bare store, on each engine (a module may define its own ``store`` instead)."""
    s: SqlStore = (
        harness.pg_store() if request.param == "postgres" else SqliteStore(tmp_path / "hub.db")
    )
    async with harness.opened(s) as opened:
        yield opened


@pytest.fixture(params=["embedded", "scaled"])
async def hut(
    request: pytest.FixtureRequest, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> AsyncIterator[HubUnderTest]:
    backend: str = request.param
    if backend == "scaled":
        harness.require_services()
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, backend)
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, root)
    try:
        yield h
    finally:
        await harness.stop(h)
        await harness.drop_backends(cfg)


@pytest.fixture(params=["embedded", "scaled"])
async def pushed(
    request: pytest.FixtureRequest, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> AsyncIterator[tuple[HubUnderTest, harness.Endpoint]]:
    """A hub whose organ PUSHED is delivered to a local endpoint, on each backend."""
    if request.param == "scaled":
        harness.require_services()
    async with harness.pushed_hub(tmp_path, pki_dir, request.param) as pair:
        yield pair


@pytest.fixture
def http_warnings(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the HTTP layer logs as warnings, as event dicts (``tests/logged.py``)."""
    return record_logs(monkeypatch, app).by_level["warning"]
