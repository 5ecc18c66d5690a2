"""A store of each kind with sealed events, a signer, and raw SQL access for tampering."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography import x509

from adapters.postgres_store import PostgresStore
from adapters.sqlite_store import SqliteStore
from hub.ledger.checkpoint import CheckpointSigner
from hub.ledger.sealer import Sealer
from hub.pki import init_pki
from hub.ports import Store, SystemClock
from hub.records import Event
from tests.service import harness
from tests.service.conftest import hut, pki_dir  # noqa: F401 - fixtures shared with these tests


@pytest.fixture(scope="session")
def ledger_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ledger-pki")
    init_pki(root, [])
    return root


def signer_for(pki: Path) -> CheckpointSigner:
    return CheckpointSigner.from_files(
        pki / "hub" / "hub.key", pki / "hub" / "hub.pem", pki / "ca" / "ca.pem"
    )


def anchors_for(pki: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((pki / "ca" / "ca.pem").read_bytes())


@dataclass
class Ledger:
    store: Store
    sealer: Sealer
    anchors: list[x509.Certificate]
    kind: str
    path: Path | None = None
    dsn: str = ""
    schema: str = ""

    async def sql(self, *statements: str, params: tuple[Any, ...] = ()) -> None:
        """Tamper directly in the database, as someone with database access would."""
        if self.path is not None:
            con = sqlite3.connect(self.path)
            try:
                for s in statements:
                    con.execute(s, params if "?" in s else ())
                con.commit()
            finally:
                con.close()
            return
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        try:
            for s in statements:
                if "?" in s:
                    await conn.execute(s.replace("?", "$1"), *params)
                else:
                    await conn.execute(s)
        finally:
            await conn.close()


async def add_events(store: Store, n: int, package: str = "p") -> None:
    await store.append_events(
        [
            Event("test", 1_000 + i, f"{package}{i % 5}", data={"i": i, "s": "Sở Nội vụ"})
            for i in range(n)
        ]
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, ledger_pki: Path
) -> AsyncIterator[Ledger]:
    store: Store
    if request.param == "postgres":
        harness.require_services()
        schema = "t_" + uuid.uuid4().hex[:12]
        store = PostgresStore(harness.PG_DSN, schema=schema)
        led_kw: dict[str, Any] = {"dsn": harness.PG_DSN, "schema": schema}
    else:
        store = SqliteStore(tmp_path / "ledger.db")
        led_kw = {"path": tmp_path / "ledger.db"}
    await store.open()
    sealer = Sealer(
        store,
        signer_for(ledger_pki),
        SystemClock(),
        origin="test.lienthong",
        interval_s=1,
        checkpoint_size=300,
    )
    try:
        yield Ledger(store, sealer, anchors_for(ledger_pki), request.param, **led_kw)
    finally:
        await store.close()
        if isinstance(store, PostgresStore):
            await store.drop_schema()
