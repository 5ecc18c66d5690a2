"""A directory import checks its organs against one read of the directory, and stops at
the first organ refused, keeping those before it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from adapters.sql.store import SqlStore
from hub.errors import InputError
from hub.ports import Directory, SystemClock
from hub.records import System
from hub.service.directory_admin import DirectoryAdmin

N = 300
BAD = 201  # the row naming a system there is not


async def test_an_import_reads_the_directory_once_and_stops_at_a_refusal(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = DirectoryAdmin(store, SystemClock(), "test")
    await admin.put_system(System("sys-i", "Import"))
    path = tmp_path / "organs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["organ_id", "name", "system_id"])
        for i in range(N):
            w.writerow([f"000.{i // 100:02d}.{i % 100:02d}.H53", f"Organ {i}", "sys-i"])
    rows = path.read_text(encoding="utf-8").splitlines()
    rows[1 + BAD] = rows[1 + BAD].replace("sys-i", "sys-nobody")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    reads = 0
    read = store.directory

    async def counted() -> Directory:
        nonlocal reads
        reads += 1
        return await read()

    monkeypatch.setattr(store, "directory", counted)
    with pytest.raises(InputError) as err:
        await admin.import_file(path)
    assert err.value.error_code == "unknown_system"
    assert reads == 1
    monkeypatch.undo()
    organs = (await store.directory()).organs
    assert len(organs) == BAD and "000.02.01.H53" not in organs
