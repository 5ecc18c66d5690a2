"""Backups of the embedded hub: the SQLite file and every package's bytes it refers to.

``create`` copies the live database with SQLite's online backup API (one read
transaction: the hub goes on writing beside it, and the copy is the database as it
stood at one instant), then copies the blobs that copy refers to, hashing each as it is
read. A referenced blob that is missing, or whose bytes no longer hash to its name,
fails the backup: the store has lost something, and the operator hears it now, not on
the day of a restore. The manifest is written last, once everything else is on disk; a
folder without one is an unfinished backup and is never restored.

``check`` reads a backup back: the database's SHA-256 and size against the manifest,
SQLite's integrity check, every referenced blob present and hashing to its name. The
ledger inside is verified by the caller (``hub.ledger.verify``) on a read-only store.
``restore`` copies a checked backup into an empty place, never over a store.

Layout of a backup folder::

    manifest.json
    hub.db                  the database (rollback journal mode: one self-contained file)
    blobs/ab/cd/<sha256>    the blob store's own layout
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from adapters.blobs import blob_path
from adapters.sql.schema import MIGRATIONS
from hub import __version__
from hub.errors import BackupError
from hub.files import fsync_dir, write_atomic

FORMAT: Final = "lienthong-backup/1"
MANIFEST: Final = "manifest.json"
DATABASE: Final = "hub.db"
BLOBS: Final = "blobs"
_CHUNK = 1024 * 1024
_IO_THREADS = 8  # copies wait on the disk (fsync), not the CPU
_SHOWN = 5  # problems named in a message; the details carry the count


@dataclass(frozen=True, slots=True)
class Manifest:
    format: str
    created: str
    hub_version: str
    schema_version: int
    database_bytes: int
    database_sha256: str
    packages: int
    blobs: int
    blob_bytes: int
    events: int  # the highest event sequence number in the copy
    sealed: int  # leaves under its latest checkpoint (genesis included)
    ledger_root: str | None

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise BackupError(
                f"{folder} has no {MANIFEST}: not a backup, or one that did not finish",
                code="backup_incomplete",
            )
        try:
            doc: Any = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BackupError(f"{path} is unreadable: {exc}", code="backup_altered") from exc
        if not isinstance(doc, dict):
            raise BackupError(f"{path} is not a JSON object", code="backup_altered")
        if doc.get("format") != FORMAT:
            raise BackupError(
                f"{path}: format {doc.get('format')!r}; this hub reads {FORMAT!r}",
                code="backup_unknown_format",
            )
        names = {f.name: f.type for f in fields(cls)}
        wrong = sorted(
            set(names) ^ set(doc)
            | {k for k, t in names.items() if t == "int" and not _count(doc.get(k))}
        )
        if wrong:
            raise BackupError(f"{path}: bad or missing fields {wrong}", code="backup_altered")
        return cls(**doc)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class _Copied:
    sha256: str
    size: int
    problem: str | None  # "missing" or "altered"


def _fsync_tree(root: Path, shas: list[str]) -> None:
    """Make the new names under ``root`` (``ab/cd/<sha256>``) survive a crash."""
    leaves = {blob_path(root, s).parent for s in shas}
    for d in sorted(leaves | {p.parent for p in leaves} | ({root} if root.is_dir() else set())):
        fsync_dir(d)


def _copy_checked(source: Path, target: Path, expected: str) -> tuple[str, int]:
    """Copy ``source`` to ``target`` (through a temporary name, fsynced) while hashing it;
    bytes not hashing to ``expected`` leave nothing at ``target``. Returns (sha256, size)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    size = 0
    with source.open("rb") as src:
        try:
            with tmp.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
            raise
    digest = h.hexdigest()
    if digest != expected:
        tmp.unlink()
        return digest, size
    os.replace(tmp, target)
    return digest, size


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


@contextlib.contextmanager
def _db(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    uri = f"{path.resolve().as_uri()}?mode=ro" if read_only else None
    conn = sqlite3.connect(uri or path, uri=read_only, timeout=30.0, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class _Contents:
    schema_version: int
    packages: int
    blobs: list[str]  # the SHA-256 of every package whose bytes are kept
    events: int
    sealed: int
    ledger_root: str | None


def _contents(conn: sqlite3.Connection) -> _Contents:
    try:
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        packages = conn.execute("SELECT COUNT(*) FROM packages").fetchone()[0]
        blobs = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT sha256 FROM packages WHERE purged_us IS NULL ORDER BY sha256"
            )
        ]
        events = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        cp = conn.execute(
            "SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"the database is not a lienthong store: {exc}", code="backup_not_a_store"
        ) from exc
    return _Contents(
        int(version or 0),
        int(packages),
        blobs,
        int(events),
        int(cp[0]) if cp else 0,
        bytes(cp[1]).hex() if cp else None,
    )


def _each_blob(
    shas: list[str], read: Callable[[str], tuple[str, int]], where: str
) -> list[_Copied]:
    """``read`` (copy or hash) every blob on the I/O threads; any blob missing or not
    hashing to its name raises a ``BackupError`` naming ``where``."""

    def one(sha: str) -> _Copied:
        try:
            digest, size = read(sha)
        except FileNotFoundError:
            return _Copied(sha, 0, "missing")
        return _Copied(sha, size, None if digest == sha else "altered")

    with ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="backup-io") as pool:
        done = list(pool.map(one, shas))
    bad = [c for c in done if c.problem is not None]
    if not bad:
        return done
    missing = [c.sha256 for c in bad if c.problem == "missing"]
    altered = [c.sha256 for c in bad if c.problem == "altered"]
    code = "blob_missing" if missing else "blob_altered"
    named = ", ".join((missing or altered)[:_SHOWN])
    raise BackupError(
        f"{where}: {len(missing)} package file(s) missing and {len(altered)} whose bytes no "
        f"longer match their SHA-256 (first: {named})",
        code=code,
        details={"missing": len(missing), "altered": len(altered)},
    )


def create(db: Path, blob_root: Path, dest: Path) -> Manifest:
    """Back up the SQLite store at ``db`` and the blobs under ``blob_root`` into ``dest``
    (absent or empty). Safe while the hub runs."""
    if not db.is_file():
        raise BackupError(f"no SQLite store at {db}", code="backup_source_missing")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(
            f"{dest} is not empty: a backup is written into a new folder",
            code="backup_target_not_empty",
        )
    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / DATABASE
    with _db(db) as src, _db(copy) as dst:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)  # all pages in one step: one read transaction, one instant
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        contents = _contents(dst)
    with copy.open("rb+") as db_file:
        os.fsync(db_file.fileno())

    copied = _each_blob(
        contents.blobs,
        lambda sha: _copy_checked(blob_path(blob_root, sha), blob_path(dest / BLOBS, sha), sha),
        f"the blob store {blob_root} (a purge may have raced the backup: run it again, "
        "into a new folder)",
    )
    _fsync_tree(dest / BLOBS, contents.blobs)
    fsync_dir(dest)
    db_sha, db_size = _hash_file(copy)
    manifest = Manifest(
        format=FORMAT,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        hub_version=__version__,
        schema_version=contents.schema_version,
        database_bytes=db_size,
        database_sha256=db_sha,
        packages=contents.packages,
        blobs=len(copied),
        blob_bytes=sum(c.size for c in copied),
        events=contents.events,
        sealed=contents.sealed,
        ledger_root=contents.ledger_root,
    )
    write_atomic(dest / MANIFEST, manifest.as_json().encode())  # last: now it is a backup
    return manifest


def check(folder: Path) -> Manifest:
    """Everything in a backup but its ledger: the manifest, the database file's hash and
    integrity, and every referenced blob. Raises ``BackupError`` with the first finding."""
    m = Manifest.read(folder)
    copy = folder / DATABASE
    if not copy.is_file():
        raise BackupError(f"{copy} is missing", code="backup_altered")
    sha, size = _hash_file(copy)
    if (sha, size) != (m.database_sha256, m.database_bytes):
        raise BackupError(
            f"{copy} is not the file the backup wrote (SHA-256 {sha}, {size} bytes; "
            f"the manifest says {m.database_sha256}, {m.database_bytes} bytes)",
            code="backup_altered",
        )
    if m.schema_version > len(MIGRATIONS):
        raise BackupError(
            f"the backup was written by a newer lienthong (schema {m.schema_version}; this "
            f"one knows {len(MIGRATIONS)}): restore it with that version or later",
            code="backup_from_newer_version",
        )
    with _db(copy, read_only=True) as conn:
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            integrity = str(exc)
        if integrity != "ok":
            raise BackupError(f"{copy}: {integrity}", code="backup_altered")
        contents = _contents(conn)
    if (contents.events, contents.sealed, len(contents.blobs)) != (m.events, m.sealed, m.blobs):
        raise BackupError(
            "the database does not hold what the manifest describes", code="backup_altered"
        )

    _each_blob(
        contents.blobs,
        lambda sha: _hash_file(blob_path(folder / BLOBS, sha)),
        f"the backup {folder}",
    )
    return m


def ensure_free(db: Path) -> None:
    """A restore's target: no store (nor its journal) at ``db``."""
    if any(Path(f"{db}{suffix}").exists() for suffix in ("", "-wal", "-journal")):
        raise BackupError(
            f"{db} exists: a backup is restored into a new place, never over a store "
            "(move the old one away first)",
            code="restore_target_exists",
        )


def restore(folder: Path, db: Path, blob_root: Path) -> Manifest:
    """Copy a checked backup (``check`` first; the ledger too) to the store at ``db``,
    which must not exist, and into the blob store at ``blob_root``. A blob already there
    under its name is kept (names are contents)."""
    m = Manifest.read(folder)
    ensure_free(db)
    with _db(folder / DATABASE, read_only=True) as conn:
        blobs = _contents(conn).blobs

    def put(sha: str) -> tuple[str, int]:
        target = blob_path(blob_root, sha)
        if target.exists():  # the same name holds the same bytes
            return sha, target.stat().st_size
        return _copy_checked(blob_path(folder / BLOBS, sha), target, sha)

    _each_blob(blobs, put, f"the backup {folder} (changed since it was checked)")
    _fsync_tree(blob_root, blobs)
    db.parent.mkdir(parents=True, exist_ok=True)
    digest, _ = _copy_checked(folder / DATABASE, db, m.database_sha256)
    if digest != m.database_sha256:
        raise BackupError(
            f"{folder / DATABASE} changed since it was checked", code="backup_altered"
        )
    fsync_dir(db.parent)
    return m
