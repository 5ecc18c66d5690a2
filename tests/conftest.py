"""Shared test fixtures: the SDK sample packages and a development PKI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub import pki

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "edxml" / "vpcp-sdk"
SCHEMAS = REPO / "schemas"


def fixture_files() -> list[Any]:
    """Sample packages for parametrize; one skipped param with the reason when absent."""
    if FIXTURES.is_dir():
        return sorted(FIXTURES.glob("*.edxml"))
    reason = f"SDK sample packages not available ({FIXTURES} is absent)"
    return [pytest.param(FIXTURES / "absent", marks=pytest.mark.skip(reason=reason))]


def fixture_bytes(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"SDK sample packages not available ({FIXTURES} is absent)")
    return path.read_bytes()


@dataclass(frozen=True)
class DevPki:
    ca: pki.Issued
    agency: pki.Issued  # signs for SENDER
    other: pki.Issued  # signs for OTHER_ORGAN


SENDER = "000.00.00.G22"
OTHER_ORGAN = "000.00.00.H53"


@pytest.fixture(scope="session")
def dev_pki() -> Iterator[DevPki]:
    ca = pki.make_ca("test CA")
    yield DevPki(ca, pki.issue(ca, "test agency G22"), pki.issue(ca, "test agency H53"))
