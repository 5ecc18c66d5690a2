"""The native API's CLI client calls again, after the hub's ``Retry-After``, when the
hub answers 429 or 503; never when it cannot be reached or refuses for good."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from hub.cli.main import main
from tests.cli.conftest import serve_in_thread


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers the queued (status, Retry-After) pairs in turn, then 202."""

    answers: ClassVar[list[tuple[int, str | None]]] = []
    seen: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, body))
        status, retry_after = self.answers.pop(0) if self.answers else (202, None)
        payload = json.dumps({"id": "p1"} if status < 300 else {"error": {"code": "busy"}})
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[str, type[_Hub]]]:
    handler = type("Hub", (_Hub,), {"answers": [], "seen": []})
    with serve_in_thread(handler) as url:
        yield url, handler


def _send(url: str, tmp_path: Path, *extra: str) -> int:
    (tmp_path / "p.edxml").write_bytes(b"<edXMLEnvelope/>")
    (tmp_path / "t").write_text("lt00.secret")
    return main(
        [
            "send",
            str(tmp_path / "p.edxml"),
            "--url",
            url,
            "--token-file",
            str(tmp_path / "t"),
            *extra,
        ]
    )


def test_busy_answers_are_waited_out_then_the_call_goes_through(
    hub: tuple[str, type[_Hub]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = hub
    handler.answers[:] = [(503, "0"), (429, "0.1")]
    assert _send(url, tmp_path) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"id": "p1"}
    assert "answered 503; trying again in 0 s" in err and "answered 429" in err
    assert [body for _path, body in handler.seen] == [b"<edXMLEnvelope/>"] * 3


def test_retries_are_bounded_and_other_refusals_are_not_retried(
    hub: tuple[str, type[_Hub]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = hub
    handler.answers[:] = [(503, "0")] * 3
    assert _send(url, tmp_path, "--retries", "1") == 1  # tried twice, still busy: the answer
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "busy"
    assert len(handler.seen) == 2
    handler.answers[:] = [(422, None)]
    assert _send(url, tmp_path) == 1
    assert len(handler.seen) == 3, "a refusal for good is not sent again"
