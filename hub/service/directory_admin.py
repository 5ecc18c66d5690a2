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

from hub.config import AuthConfig, Config
from hub.edxml.organ import classify
from hub.errors import HubError, InputError, NotFound
from hub.ports import Clock, Directory, Store
from hub.records import CertBinding, Credential, Event, Organ, System
from hub.service.audit import iso
from hub.service.auth import days_us, new_token, system_actor
from hub.service.delivery import resume_pushes
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


def _fingerprint(value: str) -> str:
    """A signer certificate's SHA-256 fingerprint as the directory keeps it: 64 lower-case
    hex digits (colons, as ``openssl x509 -fingerprint`` prints them, dropped)."""
    fp = value.replace(":", "").strip().lower()
    if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
        raise InputError(
            f"{value!r} is not a SHA-256 certificate fingerprint (64 hex digits)",
            code="bad_fingerprint",
        )
    return fp


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
        token_days: int = AuthConfig.token_days,
    ) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor
        self.vxp_key = vxp_key
        self.allow_http_push = allow_http_push  # [delivery] allow_http_push
        self.token_days = token_days  # [auth] token_days

    @classmethod
    def configured(cls, store: Store, clock: Clock, actor: str, cfg: Config) -> DirectoryAdmin:
        """As the hub's configuration says: its VXP key, whether http push URLs are allowed,
        how long new tokens last."""
        return cls(
            store,
            clock,
            actor,
            vxp_key=Path(cfg.vxp.key_file),
            allow_http_push=cfg.delivery.allow_http_push,
            token_days=cfg.auth.token_days,
        )

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

    def _organ_change(self, organ: Organ, directory: Directory | None) -> tuple[Organ, Event]:
        """The organ as saved and its event; refused (``unknown_system``, ``bad_organ_id``,
        ...) as the ``directory`` read for it stands (``_directory_for``)."""
        if directory is not None and organ.system_id not in (None, *directory.systems):
            raise InputError(
                f"organ {organ.organ_id}: no system {organ.system_id}",
                code="unknown_system",
                details={"system_id": organ.system_id},
            )
        held = directory.organs.get(organ.organ_id) if directory is not None else None
        held_url = held.push_url if held is not None else None
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

    async def _directory_for(self, organs: Sequence[Organ]) -> Directory | None:
        """The directory the organs are checked against: read from the store (not a
        process's cache, which may not yet have a system another process just saved), once
        for them all, and only when one names a system or a push endpoint."""
        if any(o.system_id or o.push_url for o in organs):
            return await self.store.directory()
        return None

    async def put_organ(self, organ: Organ) -> None:
        """Save an organ; 400 ``unknown_system`` when it names a system there is not."""
        directory = await self._directory_for([organ])
        await self.store.put_organ(*self._organ_change(organ, directory))

    async def put_organs(self, organs: Iterable[Organ]) -> list[tuple[str, str]]:
        """Save many organs in one transaction; return (organ id, error code) of those refused."""
        organs = list(organs)
        directory = await self._directory_for(organs)
        changes: list[tuple[Organ, Event]] = []
        refused: list[tuple[str, str]] = []
        for organ in organs:
            try:
                changes.append(self._organ_change(organ, directory))
            except HubError as exc:
                refused.append((organ.organ_id, exc.error_code))
        await self.store.put_organs(changes)
        return refused

    async def _put_each(self, organs: Iterable[Organ], directory: Directory | None) -> None:
        """Save organs one by one, in order, the first refusal raised (those before it stay
        saved), all checked against one read of the directory (an import of thousands of
        organs reads it once, not once per organ)."""
        for organ in organs:
            await self.store.put_organ(*self._organ_change(organ, directory))

    async def issue_token(self, system_id: str, days: int | None = None) -> tuple[str, Credential]:
        """A new bearer token for ``system_id``, valid ``days`` days (``[auth] token_days``
        when not given; 0: no end): the token to hand out once, and what is stored of it.
        ``system_not_found`` when there is no such system."""
        await self._known(system_id)
        token, cred = new_token(
            system_id, self.clock.now_us(), self.token_days if days is None else days
        )
        await self.store.put_credential(
            cred,
            self._event(
                "directory_token_issued",
                system_id=system_id,
                token_id=cred.token_id,
                expires_us=cred.expires_us,
            ),
        )
        return token, cred

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

    async def issue_vxp_secret(
        self, system_id: str, overlap_days: int = 0
    ) -> tuple[str, int | None]:
        """A new VXP secret for ``system_id``, stored sealed: returned once, with until when
        the one it replaces is still accepted (``overlap_days`` from now, for the agency to
        change its SDK configuration; None: no overlap, or there was none to replace).
        ``system_not_found`` when there is no such system."""
        if self.vxp_key is None:
            raise InputError("no VXP key file configured", code="vxp_key_missing")
        overlap = days_us(overlap_days, "the overlap")
        directory = await self.store.directory()
        _system(directory, system_id)
        had = system_id in directory.vxp_secrets
        until = self.clock.now_us() + overlap if overlap and had else None
        secret = new_secret()
        sealed = SecretBox(load_or_create_key(self.vxp_key)).seal(system_id, secret)
        await self.store.put_vxp_secret(
            system_id,
            sealed,
            self._event(
                "directory_vxp_secret_issued", system_id=system_id, previous_until_us=until
            ),
            until,
        )
        return secret, until

    async def bind(self, fingerprint: str, organ_id: str) -> None:
        fp = _fingerprint(fingerprint)
        await self.store.put_binding(
            CertBinding(fp, organ_id), self._event("directory_cert_bound", organ_id, fingerprint=fp)
        )

    async def unbind(self, fingerprint: str, organ_id: str) -> bool:
        """Stop a signer certificate signing for an organ (a clerk's certificate replaced or
        compromised); False when it was not bound to it. Packages it signed before stay
        as they were accepted; the next one it signs for the organ is refused."""
        fp = _fingerprint(fingerprint)
        return await self.store.delete_binding(
            CertBinding(fp, organ_id),
            self._event("directory_cert_unbound", organ_id, fingerprint=fp),
        )

    async def suspend(self, system_id: str, reason: str) -> bool:
        """Suspend a system: every credential of it (bearer tokens, VXP secret, TLS client
        certificates, console sessions) is refused with 403 ``system_suspended`` and nothing
        is pushed to its organs, while packages for them are still accepted and wait in
        their inboxes. False when it was suspended already."""
        if self.actor == system_actor(system_id):
            raise InputError(
                "an administrator cannot suspend its own system (the command line on the "
                "hub's machine can, and can resume it)",
                code="cannot_suspend_self",
            )
        reason = reason.strip()[:500]
        if not reason:
            raise InputError("a suspension needs a reason", code="reason_required")
        await self._known(system_id)
        event = self._event("directory_system_suspended", system_id=system_id, reason=reason)
        return await self.store.set_suspended(system_id, reason, event)

    async def resume(self, system_id: str) -> tuple[bool, int]:
        """End a suspension and send the pushes parked meanwhile; (whether the system was
        suspended, how many pushes were put back on their route)."""
        system = await self._known(system_id)
        event = self._event("directory_system_resumed", system_id=system_id)
        changed = await self.store.set_suspended(system_id, None, event)
        # Also when it was not suspended: a resume cut short (the process stopped between
        # the two steps) is finished by running it again.
        moved = await resume_pushes(self.store, self.clock, system.organs, self.actor)
        return changed, moved

    async def _known(self, system_id: str) -> System:
        return _system(await self.store.directory(), system_id)

    async def add_client_cert(self, system_id: str, pem: bytes) -> str:
        """Let a TLS client certificate authenticate ``system_id`` (mTLS); returns its
        SHA-256 fingerprint. The TLS handshake checks the chain against ``[server]
        tls_client_ca``; this binding says which system the certificate speaks for."""
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise InputError(f"not a PEM certificate: {exc}", code="bad_certificate") from exc
        await self._known(system_id)
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
        organs = list(organs)
        await self._put_each(organs, await self._directory_for(organs))
        for organ, fp in bindings.items():
            await self.bind(fp, organ)
        return {s.system_id: (await self.issue_token(s.system_id))[0] for s in systems}

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
        # Each row read as its turn comes: a row that does not read stops the import there.
        directory = await self.store.directory() if organs else None
        await self._put_each(map(organ_from, organs), directory)
        return {"systems": len(systems), "organs": len(organs)}


def _system(directory: Directory, system_id: str) -> System:
    """``system_id``'s system; ``system_not_found`` when there is none."""
    system = directory.systems.get(system_id)
    if system is None:
        raise NotFound(f"no system {system_id}", code="system_not_found")
    return system


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


def directory_json(d: Directory) -> dict[str, Any]:
    """The directory as ``directory list`` prints it and ``GET /api/v1/admin/directory``
    answers it: every setting, never a secret (tokens by id, the VXP secret's presence)."""
    return {
        "version": d.version,
        "systems": [
            {
                "system_id": s.system_id,
                "name": s.name,
                "role": s.role,
                "signature_policy": s.signature_policy,
                "vxp_strict": s.vxp_strict,
                "may_register": s.may_register,
                "networks": list(s.networks),
                "vxp_secret": s.system_id in d.vxp_secrets,
                # until when the secret before the last rotation is still accepted
                "vxp_previous_until": iso(d.vxp_previous[s.system_id][1])
                if s.system_id in d.vxp_previous
                else None,
                "organs": list(s.organs),
                "suspended": s.suspended,
            }
            for s in sorted(d.systems.values(), key=lambda s: s.system_id)
        ],
        "organs": [
            {
                "organ_id": o.organ_id,
                "name": o.name,
                "system_id": o.system_id,
                "location": o.location,
                "parent": o.parent,
                "closed": o.closed,
                "push_url": o.push_url,
                "aliases": list(o.aliases),
            }
            for o in sorted(d.organs.values(), key=lambda o: o.organ_id)
        ],
        "tokens": [
            {
                "token_id": c.token_id,
                "system_id": c.system_id,
                "created": iso(c.created_us),
                "expires": iso(c.expires_us),
                "revoked": c.revoked,
            }
            for c in sorted(d.credentials.values(), key=lambda c: c.created_us)
        ],
        "bindings": [
            {"fingerprint": b.fingerprint, "organ_id": b.organ_id}
            for b in sorted(d.bindings, key=lambda b: (b.organ_id, b.fingerprint))
        ],
        "client_certs": [
            {"fingerprint": fp, "system_id": system_id}
            for fp, system_id in sorted(d.client_certs.items())
        ],
    }
