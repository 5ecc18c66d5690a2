"""Query plans on PostgreSQL that must hold before autovacuum has analysed a table.

A new hub's tables carry no statistics until autovacuum's first ANALYZE (a minute or
more after the traffic starts); the hot queries must not fall back to scanning a whole
table in that time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from adapters import postgres_store
from adapters.postgres_store import PostgresStore
from adapters.sql.store import _inbox_page
from hub.errors import Unavailable
from hub.records import INBOX_STATES, State
from tests.service import harness

PACKAGES = 20_000


@pytest.fixture
async def pg() -> AsyncIterator[PostgresStore]:
    async with harness.opened(harness.pg_store()) as store:
        async with store._connection() as conn:
            # No statistics for the length of the test, whenever autovacuum wakes.
            for table in ("packages", "deliveries"):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            await conn.execute(
                "INSERT INTO packages (id, sha256, size, kind, sender_organ, system_id, "
                "received_us, signature) SELECT 'p' || i, md5(i::text), 10240, 'edoc', "
                "'000.00.00.G22', 'sys-a', i, '{\"outcome\": \"verified\"}' "
                "FROM generate_series(1, $1) i",
                PACKAGES,
            )
            await conn.execute(
                "INSERT INTO deliveries (id, package_id, recipient, route, state, updated_us) "
                "SELECT 'd' || i || '-' || r, 'p' || i, r, 'local', 'available', i "
                "FROM generate_series(1, $1) i, unnest(ARRAY['000.00.00.H53', "
                "'000.00.00.X01']) r",
                PACKAGES,
            )
        yield store


def _nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    out = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def test_fetching_packages_never_scans_every_delivery(pg: PostgresStore) -> None:
    ids = ["p7", "p70", "p700", "p1000", "p1500", "p19999"]
    async with pg._connection() as conn:
        analysed = await conn.fetchval(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL "
            "FROM pg_stat_user_tables WHERE relid = 'deliveries'::regclass"
        )
        # Generic and custom plans alike: asyncpg prepares the statement, and PostgreSQL
        # may settle on its generic plan after five executions.
        await conn.execute("PREPARE q (text[]) AS " + postgres_store._PACKAGES_WITH_DELIVERIES)
        plans = []
        for mode in ("force_generic_plan", "force_custom_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            literal = "{" + ",".join(ids) + "}"  # EXECUTE takes no bound parameters
            answer = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE q('{literal}')")
            plans.append(orjson.loads(answer)[0]["Plan"])
        await conn.execute("DEALLOCATE q")
        await conn.execute("RESET plan_cache_mode")
    assert analysed is False  # the case this guards: no statistics yet
    for plan in plans:
        nodes = _nodes(plan)
        assert ("Seq Scan", "deliveries") not in nodes, nodes
        assert any(rel == "deliveries" for _, rel in nodes), nodes
    found = await pg.package_with_deliveries("p700")
    assert found is not None
    package, deliveries = found
    assert package.id == "p700"
    assert sorted(d.recipient for d in deliveries) == ["000.00.00.H53", "000.00.00.X01"]


async def test_a_package_read_planned_on_a_nearly_empty_table_is_planned_again_as_it_grows() -> (
    None
):
    # What asyncpg does with every query: a named prepared statement, run again and
    # again. PostgreSQL may keep a generic plan after five runs; one made while the
    # tables held three rows reads them whole ever after (until an ANALYZE), so the
    # package reads go through connections that plan each run for its ids.
    def insert(table: str, first: int, last: int) -> str:
        if table == "packages":
            return (
                "INSERT INTO packages (id, sha256, size, kind, sender_organ, system_id, "
                "received_us, signature) SELECT 'p' || i, md5(i::text), 10240, 'edoc', "
                f"'000.00.00.G22', 'sys-a', i, '{{}}' FROM generate_series({first}, {last}) i"
            )
        return (
            "INSERT INTO deliveries (id, package_id, recipient, route, state, updated_us) "
            f"SELECT 'd' || i, 'p' || i, '000.00.00.H53', 'local', 'available', i "
            f"FROM generate_series({first}, {last}) i"
        )

    async with harness.opened(harness.pg_store()) as store:
        async with store._connection() as conn:
            for table in ("packages", "deliveries"):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                await conn.execute(insert(table, 1, 3))
        plans = {}
        for fresh in (False, True):
            async with store._connection(fresh_plans=fresh) as conn:
                plans[fresh, "mode"] = await conn.fetchval("SHOW plan_cache_mode")
        async with store._connection(fresh_plans=True) as conn:
            await conn.execute("PREPARE q (text[]) AS " + postgres_store._PACKAGES_WITH_DELIVERIES)
            for _ in range(8):
                assert len(await conn.fetch("EXECUTE q('{p1,p2}')")) == 2
            for table in ("packages", "deliveries"):
                await conn.execute(insert(table, 4, PACKAGES))
            answer = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE q('{p1,p2}')")
            await conn.execute("DEALLOCATE q")
        nodes = _nodes(orjson.loads(answer)[0]["Plan"])
        assert ("Seq Scan", "deliveries") not in nodes, nodes
        assert ("Seq Scan", "packages") not in nodes, nodes
        found = await store.package_with_deliveries(f"p{PACKAGES}")
        assert found is not None and [d.id for d in found[1]] == [f"d{PACKAGES}"]
    # Only the package reads: the other statements keep their cached plans.
    assert plans == {(False, "mode"): "auto", (True, "mode"): "force_custom_plan"}


async def test_a_store_whose_package_connections_cannot_open_is_not_left_half_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = harness.pg_store()
    real = PostgresStore._create_pool
    opened: list[Any] = []

    async def second_fails(self: PostgresStore, *args: Any, **settings: str) -> Any:
        if settings:  # the package reads' pool
            raise ConnectionRefusedError(111, "refused")
        opened.append(await real(self, *args, **settings))
        return opened[-1]

    monkeypatch.setattr(PostgresStore, "_create_pool", second_fails)
    try:
        with pytest.raises(Unavailable) as refused:
            await store.open()
    finally:
        await store.drop_schema()  # open made it before the pools
    assert refused.value.error_code == "store_unavailable"
    assert store._pool is None and store._fresh_plans is None
    assert len(opened) == 1 and opened[0]._closed  # the first pool's connections are gone


async def test_an_inbox_page_reads_its_own_rows_of_its_organs_in_order(
    pg: PostgresStore,
) -> None:
    # 20,000 waiting deliveries for each of two organs, no statistics: a page of 100 is
    # read from an index, in order, not sorted out of all of them: the waiting deliveries'
    # for the default inbox; one range per organ and state for the whole history (the
    # waiting states' from either index: PostgreSQL plans with the state given).
    organs_cases = (["000.00.00.H53"], ["000.00.00.H53", "000.00.00.X01"])
    for states, indexes in (
        (INBOX_STATES, {"deliveries_waiting"}),
        (frozenset(State), {"deliveries_inbox", "deliveries_waiting"}),
    ):
        for organs in organs_cases:
            sql, args = _inbox_page(organs, states, ["d.seq > ?"], [10], 100)
            async with pg._connection() as conn:
                answer = await conn.fetchval(
                    "EXPLAIN (FORMAT JSON, ANALYZE) " + postgres_store._pg(sql), *args
                )
            plan = orjson.loads(answer)[0]["Plan"]
            nodes = _nodes(plan)
            assert ("Seq Scan", "deliveries") not in nodes, nodes
            assert ("Sort", None) not in nodes or len(args) > 3, nodes
            scans = _scans(plan, "deliveries")
            assert scans and all(s.get("Index Name") in indexes for s in scans), scans
            # Each range is read no further than the page.
            assert all(s["Actual Rows"] <= 100 for s in scans), scans
            page = await pg.inbox(
                organs, kind=None, since_us=None, after_seq=10, limit=100, states=states
            )
            seqs = [i.delivery.seq for i in page]
            assert len(seqs) == 100 and seqs == sorted(seqs) and seqs[0] > 10


def _scans(plan: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") == relation else []
    for child in plan.get("Plans", []):
        found += _scans(child, relation)
    return found
