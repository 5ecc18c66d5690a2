"""Source networks: a system bound to the networks it connects from."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.errors import Forbidden, HubError, InputError
from hub.records import System
from hub.service.directory_admin import DirectoryAdmin
from hub.service.networks import check_peer, normalise
from tests.service.harness import HubUnderTest


def test_networks_are_kept_as_normal_cidrs() -> None:
    assert normalise([" 10.1.2.3", "10.1.7.9/16", "::1", "10.1.0.0/16"]) == (
        "10.1.0.0/16",
        "10.1.2.3/32",
        "::1/128",
    )
    for bad in ("bogus", "10.0.0.0/33", "", "10.0.0.0/8 10.1.0.0/16"):
        with pytest.raises(InputError) as err:
            normalise([bad])
        assert err.value.error_code == "bad_network"


def test_peer_inside_any_network_passes_and_outside_is_refused() -> None:
    open_ = System("s", "S")
    check_peer(open_, None)  # no networks: any address, even an unknown one
    bound = replace(open_, networks=("10.1.0.0/16", "2001:db8::/32"))
    for peer in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::7", "2001:db8::7%eth0"):
        check_peer(bound, peer)
    for peer in ("10.2.0.1", "127.0.0.1", "2001:db9::1", None, "", "not-an-address"):
        with pytest.raises(Forbidden) as err:
            check_peer(bound, peer)
        assert err.value.error_code == "source_network_forbidden"


async def _bind(hut: HubUnderTest, system_id: str, networks: tuple[str, ...]) -> None:
    s = hut.hub.directory.current.systems[system_id]
    admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
    await admin.put_system(replace(s, networks=networks))
    await hut.hub.directory.load()


async def test_a_valid_token_from_outside_the_networks_is_refused(
    hut: HubUnderTest, http_warnings: list[dict[str, Any]]
) -> None:
    await _bind(hut, "sys-b", ("10.9.0.0/16",))  # the test client connects from 127.0.0.1
    r = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "source_network_forbidden"
    assert [e["code"] for e in http_warnings if e["event"] == "authentication_failed"] == [
        "source_network_forbidden"
    ]
    r = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-a"))  # not bound
    assert r.status == 200
    await _bind(hut, "sys-b", ("10.9.0.0/16", "127.0.0.0/8"))
    r = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))
    assert r.status == 200


async def test_the_vxp_face_refuses_outside_the_networks_with_code_15(
    hut: HubUnderTest,
) -> None:
    await _bind(hut, "sys-a", ("192.0.2.0/24",))
    client = hut.vxp("sys-a")
    try:
        with pytest.raises(HubError) as err:
            await client.agencies()
        assert err.value.upstream_code == "15"  # type: ignore[attr-defined]
        assert "source_network_forbidden" in err.value.desc  # type: ignore[attr-defined]
    finally:
        await client.close()
    refused = [e for e in await hut.hub.store.ledger(0, 10_000) if e.type == "refused"]
    assert [e.data["code"] for e in refused] == ["source_network_forbidden"]


async def test_networks_are_set_through_the_admin_api_and_import(
    hut: HubUnderTest, tmp_path: Path
) -> None:
    r = await hut.client.post(
        "/api/v1/admin/systems",
        json={"system_id": "sys-n", "networks": ["10.0.0.0/8", "10.1.2.3"]},
        headers=hut.auth("admin"),
    )
    assert r.status == 200, await r.text()
    r = await hut.client.post(
        "/api/v1/admin/systems",
        json={"system_id": "sys-m", "networks": ["10.0.0.300/8"]},
        headers=hut.auth("admin"),
    )
    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_network"
    path = tmp_path / "directory.json"
    path.write_text(
        json.dumps(
            {
                "systems": [
                    {
                        "system_id": "sys-i",
                        "networks": "192.0.2.0/24; 10.5.0.1",
                        "vxp_strict": True,
                        "may_register": True,
                    }
                ]
            }
        )
    )
    admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
    await admin.import_file(path)
    directory = await hut.hub.store.directory()
    assert directory.systems["sys-n"].networks == ("10.0.0.0/8", "10.1.2.3/32")
    imported = directory.systems["sys-i"]
    assert imported.networks == ("10.5.0.1/32", "192.0.2.0/24")
    assert imported.vxp_strict and imported.may_register  # read from the file as well
    assert "sys-m" not in directory.systems
    saved = [
        e.data["networks"]
        for e in await hut.hub.store.ledger(0, 10_000)
        if e.type == "directory_system_saved" and e.data["system_id"] == "sys-n"
    ]
    assert saved == [["10.0.0.0/8", "10.1.2.3/32"]]


async def test_a_console_session_is_held_to_the_networks_on_every_request(
    hut: HubUnderTest, http_warnings: list[dict[str, Any]]
) -> None:
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["admin"]}, allow_redirects=False
    )
    assert r.status == 303, await r.text()
    cookie = {"lt_console": r.cookies["lt_console"].value}
    page = await hut.client.get("/admin/", cookies=cookie, allow_redirects=False)
    assert page.status == 200
    await _bind(hut, "admin", ("10.9.0.0/16",))  # after login: the session is still held to it
    page = await hut.client.get("/admin/", cookies=cookie, allow_redirects=False)
    assert page.status == 403  # the console's error page, naming the code
    assert "source_network_forbidden" in await page.text()
    assert [e["code"] for e in http_warnings if e["event"] == "authentication_failed"] == [
        "source_network_forbidden"
    ]
    await _bind(hut, "admin", ("127.0.0.0/8",))
    page = await hut.client.get("/admin/", cookies=cookie, allow_redirects=False)
    assert page.status == 200
