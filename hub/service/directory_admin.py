"""Changing the directory: organs, systems, tokens, certificate bindings, imports.

Every change is a ledger event naming who made it. Imports accept JSON
(``{"systems": [...], "organs": [...]}``) or CSV (one organ per row).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509

from hub.edxml.organ import classify
from hub.errors import HubError, InputError, NotFound
from hub.ports import Clock, Store
from hub.records import CertBinding, Event, Organ, System
from hub.service.auth import new_token
from hub.service.endpoints import check_push_url
from hub.service.networks import normalise
from hub.signature.trust import fingerprint
from hub.vxp.secrets import SecretBox, load_or_create_key, new_secret

ORGAN_FIELDS = (
    "organ_id",
    "name",
    "system_id",
    "location",
    "parent",
    "closed",
    "push_url",
    "aliases",
)


def _parent(organ_id: str) -> str | None:
    try:
        parent = classify(organ_id).parent()
    except ValueError:
        return None
    return parent.value if parent else None


class DirectoryAdmin:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        actor: str,
        *,
        vxp_key: Path | None = None,
        allow_http_push: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor
        self.vxp_key = vxp_key
        self.allow_http_push = allow_http_push  # [delivery] allow_http_push

    def _event(self, type_: str, organ: str | None = None, **data: Any) -> Event:
        return Event(type_, self.clock.now_us(), organ=organ, actor=self.actor, data=data)

    async def put_system(self, system: System) -> None:
        if system.role not in ("agency", "admin", "auditor"):
            raise InputError(f"unknown role {system.role!r}", code="bad_role")
        system = replace(system, networks=normalise(system.networks))
        await self.store.put_system(
            system,
            self._event(
                "directory_system_saved",
                system_id=system.system_id,
                role=system.role,
                signature_policy=system.signature_policy,
                vxp_strict=system.vxp_strict,
                may_register=system.may_register,
                networks=list(system.networks),
            ),
        )

    def _organ_change(self, organ: Organ, held_url: str | None = None) -> tuple[Organ, Event]:
        try:
            classify(organ.organ_id)
        except ValueError as exc:
            raise InputError(f"organ id {organ.organ_id!r}: {exc}", code="bad_organ_id") from exc
        if organ.location not in ("local", "upstream"):
            raise InputError("location must be local or upstream", code="bad_location")
        if organ.push_url and organ.push_url != held_url:
            # A new endpoint. One held already is refused at each push if it must be, not
            # here: saving its organ for another reason (closing it, an SDK registering
            # it again) must not fail on a setting the caller did not touch.
            check_push_url(organ.push_url, allow_http=self.allow_http_push)
        if organ.parent is None:
            organ = replace(organ, parent=_parent(organ.organ_id))
        event = self._event(
            "directory_organ_saved",
            organ.organ_id,
            system_id=organ.system_id,
            location=organ.location,
            closed=organ.closed,
            push=bool(organ.push_url),
            aliases=list(organ.aliases),
        )
        return organ, event

    async def _held_push_urls(self, organs: Sequence[Organ]) -> dict[str, str | None]:
        if not any(o.push_url for o in organs):
            return {}
        return {o.organ_id: o.push_url for o in (await self.store.directory()).organs.values()}

    async def put_organ(self, organ: Organ) -> None:
        held = await self._held_push_urls([organ])
        await self.store.put_organ(*self._organ_change(organ, held.get(organ.organ_id)))

    async def put_organs(self, organs: Iterable[Organ]) -> list[tuple[str, str]]:
        """Save many organs in one transaction; return (organ id, error code) of those refused."""
        organs = list(organs)
        held = await self._held_push_urls(organs)
        changes: list[tuple[Organ, Event]] = []
        refused: list[tuple[str, str]] = []
        for organ in organs:
            try:
                changes.append(self._organ_change(organ, held.get(organ.organ_id)))
            except HubError as exc:
                refused.append((organ.organ_id, exc.error_code))
        await self.store.put_organs(changes)
        return refused

    async def issue_token(self, system_id: str) -> str:
        token, cred = new_token(system_id, self.clock.now_us())
        await self.store.put_credential(
            cred, self._event("directory_token_issued", system_id=system_id, token_id=cred.token_id)
        )
        return token

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke a bearer token; False when it was already revoked."""
        cred = (await self.store.directory()).credentials.get(token_id)
        if cred is None:
            raise NotFound(f"no token {token_id}", code="token_not_found")
        if cred.revoked:
            return False
        await self.store.put_credential(
            replace(cred, revoked=True),
            self._event("directory_token_revoked", system_id=cred.system_id, token_id=token_id),
        )
        return True

    async def issue_vxp_secret(self, system_id: str) -> str:
        """A new VXP secret for ``system_id``, stored sealed; returned once."""
        if self.vxp_key is None:
            raise InputError("no VXP key file configured", code="vxp_key_missing")
        secret = new_secret()
        sealed = SecretBox(load_or_create_key(self.vxp_key)).seal(system_id, secret)
        await self.store.put_vxp_secret(
            system_id, sealed, self._event("directory_vxp_secret_issued", system_id=system_id)
        )
        return secret

    async def bind(self, fingerprint: str, organ_id: str) -> None:
        fp = fingerprint.replace(":", "").lower()
        await self.store.put_binding(
            CertBinding(fp, organ_id), self._event("directory_cert_bound", organ_id, fingerprint=fp)
        )

    async def add_client_cert(self, system_id: str, pem: bytes) -> str:
        """Let a TLS client certificate authenticate ``system_id`` (mTLS); returns its
        SHA-256 fingerprint. The TLS handshake checks the chain against ``[server]
        tls_client_ca``; this binding says which system the certificate speaks for."""
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise InputError(f"not a PEM certificate: {exc}", code="bad_certificate") from exc
        if system_id not in (await self.store.directory()).systems:
            raise NotFound(f"no system {system_id}", code="system_not_found")
        fp = fingerprint(cert)
        subject = cert.subject.rfc4514_string()
        await self.store.put_client_cert(
            fp,
            system_id,
            subject,
            self._event(
                "directory_client_cert_added", system_id=system_id, fingerprint=fp, subject=subject
            ),
        )
        return fp

    async def remove_client_cert(self, fp: str) -> bool:
        """Stop a client certificate authenticating anyone; False when it was not registered."""
        fp = fp.replace(":", "").lower()
        owner = (await self.store.directory()).client_certs.get(fp)
        return await self.store.delete_client_cert(
            fp, self._event("directory_client_cert_removed", system_id=owner, fingerprint=fp)
        )

    async def seed(
        self, systems: Iterable[System], organs: Iterable[Organ], bindings: dict[str, str]
    ) -> dict[str, str]:
        """Systems, organs and certificate bindings ({organ: fingerprint}); a token per
        system, returned once."""
        systems = list(systems)
        for s in systems:
            await self.put_system(s)
        for o in organs:
            await self.put_organ(o)
        for organ, fp in bindings.items():
            await self.bind(fp, organ)
        return {s.system_id: await self.issue_token(s.system_id) for s in systems}

    async def import_file(self, path: Path) -> dict[str, int]:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            systems = data.get("systems", [])
            organs = data.get("organs", [])
        else:
            systems, organs = [], list(csv.DictReader(io.StringIO(text)))
        for s in systems:
            networks = s.get("networks") or ()
            if isinstance(networks, str):
                networks = networks.replace(";", " ").replace(",", " ").split()
            await self.put_system(
                System(
                    s["system_id"],
                    s.get("name") or s["system_id"],
                    s.get("role", "agency"),
                    s.get("signature_policy"),
                    vxp_strict=bool(s.get("vxp_strict")),
                    may_register=bool(s.get("may_register")),
                    networks=tuple(str(n) for n in networks),
                )
            )
        for row in organs:
            await self.put_organ(organ_from(row))
        return {"systems": len(systems), "organs": len(organs)}


def organ_from(row: dict[str, Any]) -> Organ:
    unknown = set(row) - set(ORGAN_FIELDS)
    if unknown:
        raise InputError(f"unknown organ fields: {sorted(unknown)}", code="bad_import")
    aliases: Iterable[str] = row.get("aliases") or ()
    if isinstance(aliases, str):
        aliases = [a for a in aliases.replace(";", " ").split() if a]
    closed = row.get("closed") or False
    if isinstance(closed, str):
        closed = closed.strip().lower() in ("1", "true", "yes")
    return Organ(
        organ_id=str(row["organ_id"]).strip(),
        name=str(row.get("name") or row["organ_id"]),
        system_id=(row.get("system_id") or None),
        location=row.get("location") or "local",
        parent=row.get("parent") or None,
        closed=bool(closed),
        push_url=row.get("push_url") or None,
        aliases=tuple(aliases),
    )
