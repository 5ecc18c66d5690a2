"""``lienthong edxml build | sign | verify | inspect``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from hub.edxml.builder import build
from hub.edxml.dates import EdDate, EdTimestamp
from hub.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    Code,
    DocumentPackage,
    DocumentType,
    ManifestReference,
    Organization,
    Package,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StatusPackage,
    TraceHeader,
)
from hub.edxml.parser import parse_package
from hub.edxml.summary import summarise
from hub.errors import ConfigError, HubError, InputError
from hub.signature.policy import CertBindings, SignatureChecker, SignaturePolicy
from hub.signature.sign import sign_package
from hub.signature.trust import TrustStore


def register(sub: Any) -> None:
    ed = sub.add_parser("edxml", help="build, sign, verify and inspect edXML packages")
    acts = ed.add_subparsers(dest="edxml_command", required=True, metavar="ACTION")

    b = acts.add_parser("build", help="build a package in the SDK's exact layout")
    b.add_argument("--kind", choices=("edoc", "status"), default="edoc")
    b.add_argument("--from", dest="from_", required=True, metavar="ORGAN_ID")
    b.add_argument("--from-name", default=None)
    b.add_argument("--to", action="append", default=[], metavar="ORGAN_ID")
    b.add_argument("--subject", default="Van ban thu nghiem")
    b.add_argument("--code", default="1/TEST", help="CodeNumber/CodeNotation")
    b.add_argument("--document-id", default=None, help="default: <from>,<date>,<code>")
    b.add_argument("--business-type", type=int, choices=(0, 1, 2, 3), default=0)
    b.add_argument("--earlier-document-id", default=None, help="for business types 1, 2, 3")
    b.add_argument("--attach", action="append", default=[], type=Path, metavar="FILE")
    b.add_argument("--status-code", default="01")
    b.add_argument("--response-organ", help="status: organ the status is addressed to")
    b.add_argument("--response-document-id", help="status: the document concerned")
    b.add_argument("--description", default=None)
    b.add_argument("-o", "--output", type=Path, default=None, help="default: stdout")
    b.set_defaults(func=_build)

    s = acts.add_parser("sign", help="sign a package (enveloped, exc-c14n, RSA-SHA256)")
    s.add_argument("input", type=Path)
    s.add_argument("--key", type=Path, required=True, help="PEM private key")
    s.add_argument("--cert", type=Path, required=True, help="PEM signer certificate")
    s.add_argument("--chain", type=Path, default=None, help="PEM intermediates to include")
    s.add_argument("-o", "--output", type=Path, default=None)
    s.set_defaults(func=_sign)

    v = acts.add_parser("verify", help="verify a package's signature under a policy")
    v.add_argument("input", type=Path)
    v.add_argument("--trust", type=Path, required=True, help="trust store directory")
    v.add_argument("--policy", choices=[p.value for p in SignaturePolicy], default="required")
    v.add_argument("--bindings", type=Path, default=None, help="bindings.json")
    v.add_argument("--sender", default=None, help="sending organ (default: From/OrganId)")
    v.add_argument("--allow-sha1", action="store_true", help="legacy policy: accept SHA-1")
    v.add_argument("--require-crl", action="store_true")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)

    i = acts.add_parser("inspect", help="print a readable summary of a package")
    i.add_argument("input", type=Path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)


def _fail(exc: HubError) -> int:
    print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
    if isinstance(exc, ConfigError):
        return 5
    if exc.error_code.startswith(("signature", "cert", "reference", "algorithm")):
        return 3
    return 1 if exc.error_code == "validation_failed" else 4


def _write(out: Path | None, data: bytes) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)


def _attachment(i: int, path: Path) -> tuple[ManifestReference, Attachment]:
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    cid = str(i)
    return (
        ManifestReference(cid, ctype, path.name, path.name),
        Attachment.of(
            cid,
            path.read_bytes(),
            attachment_name=path.name,
            description=path.name,
            content_type=ctype,
        ),
    )


def _build(args: argparse.Namespace) -> int:
    today = dt.date.today()
    now = EdTimestamp.of(dt.datetime.now(dt.UTC))
    number, _, notation = args.code.partition("/")
    code = Code(number or None, notation or None)
    sender = Organization(args.from_, args.from_name or args.from_)
    package: Package
    if args.kind == "status":
        if not (args.response_organ and args.response_document_id):
            print(
                "error: status packages need --response-organ and --response-document-id",
                file=sys.stderr,
            )
            return 2
        package = StatusPackage(
            from_=sender,
            response_for=ResponseFor(
                args.response_organ, code, EdDate.of(today), args.response_document_id
            ),
            status_code=args.status_code.zfill(2),
            timestamp=now,
            description=args.description,
        )
    else:
        if not args.to:
            print("error: a document needs at least one --to", file=sys.stderr)
            return 2
        pairs = [_attachment(n, p) for n, p in enumerate(args.attach, 1)]
        doc_type = BusinessDocType(args.business_type)
        package = DocumentPackage(
            from_=sender,
            to=tuple(Organization(t, t) for t in args.to),
            code=code,
            promulgation=PromulgationInfo("Ha Noi", EdDate.of(today)),
            document_type=DocumentType("1", "0", "Cong van"),
            subject=args.subject,
            signer_info=SignerInfo("KT. GIAM DOC", "Pho Giam doc", "Nguyen Van A"),
            document_id=args.document_id
            or f"{args.from_},{today.strftime('%Y/%m/%d')},{code.text}",
            traces=(TraceHeader(args.from_, now),),
            business=Business(doc_type, document_id=args.earlier_document_id, paper="0"),
            manifest=tuple(m for m, _ in pairs),
            attachments=tuple(a for _, a in pairs),
        )
    _write(args.output, build(package))
    return 0


def _sign(args: argparse.Namespace) -> int:
    try:
        cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
        chain = x509.load_pem_x509_certificates(args.chain.read_bytes()) if args.chain else []
        signed = sign_package(args.input.read_bytes(), args.key.read_bytes(), cert, chain)
    except HubError as exc:
        return _fail(exc)
    except ValueError as exc:
        print(f"error: cannot read key or certificate: {exc}", file=sys.stderr)
        return 5
    _write(args.output, signed)
    return 0


def _bindings(path: Path | None) -> CertBindings:
    if path is None:
        return CertBindings()
    raw = json.loads(path.read_text())
    return CertBindings.of(raw.get("fingerprints"), raw.get("subjects"))


def _verify(args: argparse.Namespace) -> int:
    try:
        trust = TrustStore.from_directory(args.trust, require_crl=args.require_crl)
        parsed = parse_package(args.input.read_bytes())
    except HubError as exc:
        return _fail(exc)
    checker = SignatureChecker(trust, _bindings(args.bindings), allow_sha1=args.allow_sha1)
    sender = args.sender or parsed.package.from_.organ_id
    record = checker.check(parsed, SignaturePolicy(args.policy), sender)
    if args.json:
        print(json.dumps(record.as_dict(), ensure_ascii=False, indent=2))
    else:
        verdict = "ACCEPTED" if record.accepted else "REFUSED"
        print(f"{verdict}: outcome={record.outcome} policy={record.policy}")
        if record.reason_code:
            print(f"  reason: {record.reason_code}: {record.reason}")
        if record.signer_subject:
            print(f"  signer: {record.signer_subject}")
            print(f"  certificate sha256: {record.cert_fingerprint}")
            print(f"  chain: {' <- '.join(record.chain)}")
            print(f"  revocation: {record.revocation}")
    return 0 if record.accepted else 3


def _inspect(args: argparse.Namespace) -> int:
    try:
        parsed = parse_package(args.input.read_bytes())
    except InputError as exc:
        return _fail(exc)
    info = summarise(parsed)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        _print_summary(info)
    return 1 if any(p["severity"] == "error" for p in info["problems"]) else 0


def _print_summary(info: dict[str, Any]) -> None:
    skip = {"attachments", "problems", "to", "from"}
    print(f"kind: {info['kind']}")
    print(f"from: {info['from']['organ_id']} ({info['from']['name']})")
    for t in info.get("to", []):
        print(f"to: {t['organ_id']} ({t['name']})")
    for k, val in info.items():
        if k not in skip and k != "kind" and val is not None:
            print(f"{k}: {val}")
    for a in info.get("attachments", []):
        size = a.get("decoded_size", a.get("error"))
        print(f"attachment: cid:{a['content_id']} {a['name']} [{a['declared_type']}] {size}")
    if not info["problems"]:
        print("problems: none")
    for p in info["problems"]:
        print(f"{p['severity']}: {p['code']} at {p['path']}: {p['message']}")
