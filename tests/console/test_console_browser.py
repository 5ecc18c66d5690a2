"""The admin console in a real browser: Debian's chromium driven by Playwright.

Log in, search the message log by sender and date, open a package's timeline,
resend a dead delivery and see it delivered; an auditor sees everything and can
change nothing. Screenshots go to ``var/test-artifacts/console/``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from hub.edxml import demo
from tests.service import harness
from tests.service.conftest import pki_dir  # noqa: F401 - fixture
from tests.service.harness import PUSHED, A, B, Endpoint, HubUnderTest, eventually, signed

CHROMIUM = Path("/usr/bin/chromium")
STATE = "#delivery-" + PUSHED.replace(".", "\\.") + " .state"  # a CSS id with dots
SHOTS = Path(os.environ.get("LIENTHONG_ARTIFACTS", "var/test-artifacts")) / "console"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 - one stat before the browser starts
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but /usr/bin/chromium is missing (make test installs it)")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def console(
    tmp_path: Path,
    pki_dir: tuple[Path, dict[str, str]],  # noqa: F811 - the fixture
) -> AsyncIterator[tuple[HubUnderTest, Endpoint]]:
    async with harness.pushed_hub(tmp_path, pki_dir, "embedded") as pair:
        yield pair


async def _shot(page: Page, name: str) -> None:
    path = SHOTS / f"{name}.png"
    png = await page.screenshot(path=str(path), full_page=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1_000


async def _login(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/admin/")
    assert "/admin/login" in page.url  # no session: sent to the login page
    await page.fill("#token", token)
    await page.click("#login")
    await page.wait_for_url(f"{base}/admin/")


def _reloaded(page: Page, selector: str) -> Callable[[], Awaitable[str]]:
    """A probe for ``eventually``: reload the page, read one element's text."""

    async def probe() -> str:
        try:
            await page.reload()
            return str(await page.text_content(selector) or "")
        except PlaywrightError:  # a navigation was still settling: look again
            return ""

    return probe


async def _dead_package(h: HubUnderTest, endpoint: Endpoint) -> str:
    endpoint.fail = True
    data = signed(h.pki_dir, A, demo.document_bytes(sender=A, to=(PUSHED,), number="7/UBND"))
    r = await h.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    pid: str = (await r.json())["id"]

    async def state() -> str:
        return str((await h.hub.store.deliveries(pid))[0].state)

    await eventually(state, lambda s: s == "dead", timeout=30)
    return pid


@pytest.fixture(autouse=True)
def _shots_dir() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)


async def test_admin_logs_in_searches_opens_a_timeline_and_resends_a_dead_delivery(
    console: tuple[HubUnderTest, Endpoint], browser: Browser
) -> None:
    h, endpoint = console
    pid = await _dead_package(h, endpoint)
    base = str(h.client.make_url("")).rstrip("/")
    page = await browser.new_page()
    await _login(page, base, h.tokens["admin"])
    assert await page.text_content("#who") == "admin"
    assert await page.text_content("#dead") == "1"
    assert await page.text_content("#dead-letters") == "1"  # also parked on the broker DLQ
    assert "Chuyển thất bại" in await page.content()  # Vietnamese by default
    await _shot(page, "1-dashboard")

    await page.click("text=Nhật ký văn bản")
    await page.fill("#f-sender", A)
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date()
    await page.fill("#f-from", today.isoformat())
    await page.fill("#f-to", (today + dt.timedelta(days=1)).isoformat())
    await page.click("#search")
    await page.wait_for_selector("#results")
    assert await page.locator("tr.row").count() == 1
    await _shot(page, "2-log-search")
    await page.click("a.open")
    await page.wait_for_selector("#package-id")
    assert await page.text_content("#package-id") == pid
    types = await page.locator(".event-type").all_text_contents()
    assert types[:2] == ["received", "accepted"] and "dead" in types
    assert await page.text_content(STATE) == "dead"
    await _shot(page, "3-timeline-dead")

    endpoint.fail = False
    await page.click("button.resend")
    await page.wait_for_selector("#message")

    await eventually(_reloaded(page, STATE), lambda s: s == "fetched", timeout=20)  # pushed
    types = await page.locator(".event-type").all_text_contents()
    assert "resent" in types and types[-1] == "pushed"
    await _shot(page, "4-timeline-resent-delivered")
    resent = [e for e in await h.hub.store.events(pid) if e.type == "resent"]
    assert [e.actor for e in resent] == ["system:admin"]
    asked = [e for e in await h.hub.store.ledger(0, 10_000) if e.type == "audit_query"]
    assert {e.data["how"] for e in asked} >= {"page", f"timeline:{pid}"}
    assert all(e.actor == "system:admin" for e in asked)


async def test_auditor_sees_the_console_in_english_but_cannot_change_anything(
    console: tuple[HubUnderTest, Endpoint], browser: Browser
) -> None:
    h, endpoint = console
    pid = await _dead_package(h, endpoint)
    base = str(h.client.make_url("")).rstrip("/")
    page = await browser.new_page()
    await page.goto(f"{base}/admin/login")
    await page.fill("#token", h.tokens["sys-a"])  # an agency's token is not enough
    await page.click("#login")
    assert "console is for administrators and auditors" in str(await page.text_content("#error"))
    await _login(page, base, h.tokens["auditor"])
    await page.goto(f"{base}/admin/packages/{pid}?lang=en")
    assert "Deliveries" in await page.content()
    assert await page.locator("button.resend").count() == 0
    await _shot(page, "5-auditor-timeline-en")
    d = (await h.hub.store.deliveries(pid))[0]
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(
        f"{base}/admin/packages/{pid}/deliveries/{d.id}/resend", form={"csrf": str(csrf)}
    )
    assert r.status == 403 and "role_forbidden" in await r.text()
    assert str((await h.hub.store.deliveries(pid))[0].state) == "dead"
    await page.goto(f"{base}/admin/ledger")
    await h.hub.sealer.seal_once()
    async with page.expect_navigation():  # the form posts, then redirects back here
        await page.click("#verify")

    result = await eventually(_reloaded(page, "#verify-result"), lambda s: s.startswith("OK"))
    assert result.startswith("OK")
    await _shot(page, "6-ledger-verified")
    verified = [e for e in await h.hub.store.ledger(0, 10_000) if e.type == "ledger_verified"]
    assert verified[0].actor == "system:auditor" and verified[0].data["ok"] is True

    # A document B has not answered, seen after its working day has ended: overdue.
    data = signed(h.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number="30/UBND"))
    r = await h.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    late: str = (await r.json())["id"]
    await page.goto(f"{base}/admin/?lang=en")
    assert await page.text_content("#overdue") == "0"  # received just now
    h.hub.clock = harness.LaterClock(7)
    await page.reload()  # a week on, by the hub's clock: the 8-hour session has ended
    assert "/admin/login" in page.url
    await page.context.clear_cookies()
    await _login(page, base, h.tokens["auditor"])
    assert await page.text_content("#overdue") == "1"  # the dead delivery does not count
    await page.click("#overdue")
    await page.wait_for_selector("#results")
    assert await page.is_checked("#f-overdue")
    assert await page.locator("tr.row a.open").all_text_contents() == [late[:8]]
    await _shot(page, "7-overdue-acknowledgements")
