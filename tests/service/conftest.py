"""Fixtures: one hub per test, on each backend (embedded; PostgreSQL + RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.service import harness
from tests.service.harness import HubUnderTest


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("pki")
    return root, harness.make_pki(root)


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
