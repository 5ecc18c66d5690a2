"""One error tree for the whole hub.

Every error carries a stable snake_case ``code`` (part of the API: clients and
auditors key on it), a message a clerk's IT contact can act on, and optional
structured ``details``. HTTP status and the VXP ``ErrorCode`` are properties of
the class, read only by the HTTP faces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    code: ClassVar[str] = "hub_error"
    http_status: ClassVar[int] = 500
    vxp_code: ClassVar[str] = "20"  # platform error
    retry_after_s: ClassVar[int | None] = None  # sent as Retry-After when set

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Instance code narrows the class code (e.g. which signature check failed);
        # the class code stays the family.
        self.error_code: str = code or self.code
        self.details: dict[str, Any] = dict(details or {})
        self.recorded = False  # set once a ledger event records this refusal
        self.counted = False  # set once the intake metrics count it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.error_code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments (ValidationFailed: problems);
        # rebuilding from the instance's attributes pickles every one alike (refusals
        # made in an examiner process come back through pickle).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[HubError], message: str, state: dict[str, Any]) -> HubError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class InputError(HubError):
    """The bytes we were given are not an acceptable package."""

    code = "invalid_input"
    http_status = 400
    vxp_code = "22"  # package not in the edXML standard format


class PackageTooLarge(InputError):
    code = "package_too_large"
    http_status = 413
    vxp_code = "10"


class MalformedXml(InputError):
    """Not well-formed, hostile (DTD, entities) or over a structural limit."""

    code = "malformed_xml"


class ValidationFailed(InputError):
    """Well-formed XML that breaks edXML rules; ``problems`` lists every one."""

    code = "validation_failed"
    http_status = 422

    def __init__(self, problems: list[Mapping[str, str]], *, code: str | None = None) -> None:
        first = problems[0] if problems else {"code": "unknown", "path": "", "message": ""}
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{first['message']} at {first['path']}{more}",
            code=code,
            details={"problems": [dict(p) for p in problems]},
        )
        self.problems = problems


class SignatureRefused(InputError):
    """The signature policy refused the package; ``code`` says which check failed."""

    code = "signature_refused"
    http_status = 422


class AuthenticationFailed(HubError):
    code = "authentication_failed"
    http_status = 401
    vxp_code = "15"


class Forbidden(HubError):
    code = "forbidden"
    http_status = 403
    vxp_code = "19"


class NetworkForbidden(Forbidden):
    """A valid credential from outside its system's networks (``hub/service/networks.py``)."""

    code = "source_network_forbidden"
    vxp_code = "15"


class SystemSuspended(Forbidden):
    """A valid credential of a system an administrator suspended (``directory suspend``)."""

    code = "system_suspended"
    vxp_code = "15"


class NotFound(HubError):
    code = "not_found"
    http_status = 404
    vxp_code = "404"


class Gone(HubError):
    """It existed, and the record of it remains, but the bytes were purged (retention)."""

    code = "gone"
    http_status = 410
    vxp_code = "404"


class Conflict(HubError):
    code = "conflict"
    http_status = 409
    vxp_code = "20"


class Unavailable(HubError):
    """A dependency (store, broker, upstream) cannot take the work right now."""

    code = "unavailable"
    http_status = 503
    vxp_code = "20"
    retry_after_s = 1


class Unroutable(Unavailable):
    """A broker had no queue bound for a message: kept in the outbox, published again."""

    code = "unroutable"


class TooManyUploads(HubError):
    """The caller has as many uploads in flight as it may (``hub/service/admission.py``)."""

    code = "too_many_uploads"
    http_status = 429
    vxp_code = "20"
    retry_after_s = 1


class UpstreamRejected(HubError):
    """The upstream axis definitively refused what we sent (no retry helps)."""

    code = "upstream_rejected"
    http_status = 502
    vxp_code = "20"


class LedgerCorrupt(HubError):
    """Stored ledger data (events, tiles, checkpoints) does not add up."""

    code = "ledger_corrupt"
    http_status = 500
    vxp_code = "20"


class BackupError(HubError):
    """A backup cannot be written, checked or restored; ``code`` says why."""

    code = "backup_failed"
    http_status = 500
    vxp_code = "20"


class CrlRefused(HubError):
    """A CRL fetched from a CA's address is not one to believe (unreadable, signed by no
    trusted CA, stale, older than the one held); ``code`` says which."""

    code = "crl_refused"
    http_status = 502
    vxp_code = "20"


class OcspRefused(HubError):
    """An OCSP response is not one to believe (unreadable, not successful, about another
    certificate, signed by nobody the CA authorised, stale); ``code`` says which."""

    code = "ocsp_refused"
    http_status = 502
    vxp_code = "20"


class ConfigError(HubError):
    code = "config_error"
    http_status = 500
