"""One TOML file, with ``LIENTHONG_<SECTION>_<KEY>`` environment overrides.

Unknown sections or keys are refused (a typo must not silently fall back to a
default). Secrets (DSNs, broker URLs) are never printed: ``redacted()`` masks them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.errors import ConfigError
from hub.service.workdays import VN_FIXED_HOLIDAYS, WorkCalendar


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024 * 1024
    # Hub processes sharing the port (SO_REUSEPORT). More than one needs the scaled mode
    # (PostgreSQL + RabbitMQ): the embedded store and broker belong to one process.
    workers: int = 1
    # HTTPS served by the hub itself (PEM files); with tls_client_ca, clients may
    # authenticate with a TLS client certificate registered to their system (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Uploads (native submit, VXP sendEdoc) in flight per process: per system, large
    # ones (spooled: over 1 MB or of unknown length) per system, and large ones in all
    # (the spool's disk use is at most max_large_uploads x max_body_bytes).
    max_uploads_per_system: int = 64
    max_large_uploads_per_system: int = 4
    max_large_uploads: int = 16


@dataclass
class StoreConfig:
    kind: str = "sqlite"  # sqlite | postgres
    path: str = "var/dev/lienthong.db"
    dsn: str = "postgresql://127.0.0.1:5432/test"
    schema: str = "public"
    pool_max: int = 10
    synchronous: str = "FULL"  # SQLite: FULL fsyncs every group commit


BLOB_FLUSH_MODES = ("group", "each")


@dataclass
class BlobConfig:
    path: str = "var/dev/blobs"
    # group: one syncfs(2) makes every write finished meanwhile durable (Linux; elsewhere
    # each); each: fsync every file and its directory (a volume shared with busy writers)
    flush: str = "group"
    # New packages are refused (503 blob_store_full) while the blob volume has less free
    # than this: uploads in flight, fetches, acks and the ledger keep working. The default
    # covers the spool's worst case (max_large_uploads x max_body_bytes: 16 x 64 MB).
    min_free_mb: int = 1024

    @property
    def min_free_bytes(self) -> int:
        return self.min_free_mb * 1024 * 1024


@dataclass
class BrokerConfig:
    kind: str = "embedded"  # embedded | rabbitmq
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    prefix: str = "lienthong"
    prefetch: int = 32


@dataclass
class TrustConfig:
    dir: str = "var/dev/pki/trust"
    require_crl: bool = False
    reload_s: float = 60.0  # look for new CRLs and CAs this often (0: only on SIGHUP)
    # CRLs the hub fetches itself (hub/service/crl_refresh.py), kept apart from `dir`.
    crl_dir: str = "var/dev/crls"
    crl_urls: str = ""  # http(s) addresses, comma-separated (or a TOML array)
    crl_from_certificates: bool = True  # also the distribution points of CA and signer chains
    crl_refresh_s: float = 3600.0  # each address this often (0: the hub fetches none)
    crl_retry_s: float = 300.0  # after a failed or refused download
    crl_timeout_s: float = 30.0
    crl_max_bytes: int = 16 * 1024 * 1024
    # OCSP (hub/service/ocsp_check.py): ask a signer's CA about the signer's certificate
    # when the certificate names a responder; the answer is used beside the CRL.
    ocsp: bool = True
    ocsp_timeout_s: float = 5.0  # a question, responders tried included
    ocsp_max_age_s: float = 3600.0  # an answer counts at most this long
    ocsp_retry_s: float = 60.0  # after no answer to believe: the CRL decides meanwhile

    def crl_url_list(self) -> list[str]:
        return [u.strip() for u in self.crl_urls.split(",") if u.strip()]


@dataclass
class IntakeConfig:
    default_policy: str = "if-present"  # required | if-present | off
    allow_sha1: bool = False
    max_elements: int = 200_000
    max_depth: int = 48
    # Packages over 512 KB examined at once (in threads): each takes about 3x its size
    # in memory while verified, so this bounds that memory (64 MB packages: 2 x 192 MB).
    large_examinations: int = 2
    # Processes examining small packages (parse, validate, the signature's match) beside
    # the event loop: -1 is one when the machine has more than one core; 0 examines them
    # on the event loop.
    examiners: int = -1
    # Each examiner process's address space (MB; 0: uncapped): a package that makes a
    # native library allocate without end fails in its examiner (503 examiner_failed)
    # instead of taking the machine's memory. An idle examiner maps ~70 MB; a batch of
    # 64 packages of 512 KB needs ~200 MB more.
    examiner_memory_mb: int = 1024


@dataclass
class DeliveryConfig:
    max_attempts: int = 12
    total_s: float = 86_400.0
    base_s: float = 1.0
    cap_s: float = 600.0
    push_timeout_s: float = 30.0
    # https push endpoints: CAs their certificates must chain to (PEM; empty: the
    # system's), and the hub's client certificate for endpoints that require mTLS.
    push_ca_file: str = ""
    push_client_cert: str = ""
    push_client_key: str = ""
    # Plain http push endpoints: refused unless this is set (a laboratory; never for
    # real agencies: the packages would cross the network unencrypted).
    allow_http_push: bool = False
    sweep_s: float = 2.0


@dataclass
class UpstreamConfig:
    kind: str = "none"  # none | double (in-process test double) | vxp
    url: str = ""  # the national axis (or a parent hub's VXP face), e.g. https://axis/vxp
    system_id: str = ""  # this hub's system id there
    secret: str = ""  # this hub's VXP secret there (prefer LIENTHONG_UPSTREAM_SECRET)
    timeout_s: float = 30.0
    poll_s: float = 2.0  # how often to ask for received documents and statuses
    sync_s: float = 3600.0  # directory synchronisation interval (0: never)
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_open_s: float = 30.0  # how long it stays open before one trial call
    # How documents are taken: getEdoc (the SDK's way: base64 in JSON, in memory whole
    # while decoded) or downloadEdoc (raw bytes, spooled to disk as they arrive; for an
    # axis that answers failures with an HTTP error status, as a lienthong hub does).
    take: str = "getEdoc"


@dataclass
class VxpConfig:
    enabled: bool = True
    base_path: str = "/vxp"  # the SDK endpoint is http(s)://host:port<base_path>
    key_file: str = "var/dev/vxp.key"  # AES key for the systems' VXP secrets at rest
    strict_window_s: float = 300.0  # strict systems: timestamp age allowed either way
    list_limit: int = 500  # items per getReceivedEdocList / getSentEdocList answer


@dataclass
class LedgerConfig:
    origin: str = "lienthong.local"  # this ledger's name, in its genesis leaf and checkpoints
    key_file: str = "var/dev/pki/hub/hub.key"  # the hub's key: signs checkpoints
    cert_file: str = "var/dev/pki/hub/hub.pem"
    ca_file: str = "var/dev/pki/ca/ca.pem"  # issuer(s) of cert_file: chain and trust anchor
    seal: bool = True  # this process may seal (one sealer at a time in any case)
    seal_s: float = 5.0  # checkpoint interval
    checkpoint_size: int = 65_536  # at most this many new leaves per checkpoint
    retention_days: int = 0  # purge package bytes this many days after receipt (0: never)
    purge_s: float = 3600.0  # how often the retention purge runs


@dataclass
class WorkdayConfig:
    """The working calendar for overdue acknowledgements (``hub/service/workdays.py``):
    comma-separated values, or TOML arrays of strings."""

    days: str = "mon,tue,wed,thu,fri"
    ends: str = "17:00"  # Vietnam time
    holidays: str = VN_FIXED_HOLIDAYS  # YYYY-MM-DD once, MM-DD every year
    extra_days: str = ""  # YYYY-MM-DD worked although a weekend or a holiday

    def calendar(self) -> WorkCalendar:
        return WorkCalendar.parse(self.days, self.ends, self.holidays, self.extra_days)


@dataclass
class AuthConfig:
    # How long a bearer token issued by the hub stays valid (``directory token``, the admin
    # API, imports); 0: no end. A token's own ``--days`` overrides it.
    token_days: int = 365


@dataclass
class LogConfig:
    format: str = "auto"  # auto | json | console
    level: str = "info"


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    blobs: BlobConfig = field(default_factory=BlobConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    vxp: VxpConfig = field(default_factory=VxpConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    workday: WorkdayConfig = field(default_factory=WorkdayConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def redacted(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["store"]["dsn"] = _mask(d["store"]["dsn"])
        d["broker"]["url"] = _mask(d["broker"]["url"])
        d["upstream"]["secret"] = "***" if d["upstream"]["secret"] else ""
        return d


def _mask(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def flag(value: str) -> bool | None:
    """A yes/no word (``1 true yes on`` / ``0 false no off``, any case); ``None`` if not one."""
    word = value.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _coerce(value: Any, like: Any, where: str) -> Any:
    if isinstance(like, str) and isinstance(value, list):  # a TOML array for a list value
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected strings, got {value!r}")
        return ",".join(value)
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and (yes := flag(value)) is not None:
            return yes
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    try:
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from exc
    return str(value)


def _apply(cfg: Config, data: Mapping[str, Any], source: str) -> None:
    for section, values in data.items():
        sub = getattr(cfg, section, None)
        if sub is None or not dataclasses.is_dataclass(sub) or not isinstance(values, Mapping):
            raise ConfigError(f"{source}: unknown section [{section}]")
        names = {f.name for f in fields(sub)}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}]")
            setattr(sub, key, _coerce(value, getattr(sub, key), f"{source} [{section}] {key}"))


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    cfg = Config()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
        _apply(cfg, data, str(path))
    env = os.environ if env is None else env
    overrides: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith("LIENTHONG_") or name.count("_") < 2:
            continue
        _, section, key = name.lower().split("_", 2)
        if hasattr(cfg, section):
            overrides.setdefault(section, {})[key] = value
    _apply(cfg, overrides, "environment")
    _check(cfg)
    return cfg


def _check_examiners(intake: IntakeConfig) -> None:
    if not -1 <= intake.examiners <= 64:
        raise ConfigError(
            "[intake] examiners must be -1 (one when there is a core to spare), 0 (none: "
            "the event loop examines) or a number of processes up to 64"
        )
    if intake.examiner_memory_mb != 0 and intake.examiner_memory_mb < 256:
        raise ConfigError(
            "[intake] examiner_memory_mb must be 0 (no cap) or at least 256 (an idle examiner "
            "process maps ~70 MB; a full batch of small packages needs ~200 MB more)"
        )


def _check(cfg: Config) -> None:
    allowed = {
        ("store", "kind"): ("sqlite", "postgres"),
        ("blobs", "flush"): BLOB_FLUSH_MODES,
        ("broker", "kind"): ("embedded", "rabbitmq"),
        ("intake", "default_policy"): ("required", "if-present", "off"),
        ("upstream", "kind"): ("none", "double", "vxp"),
        ("upstream", "take"): ("getEdoc", "downloadEdoc"),
        ("log", "format"): ("auto", "json", "console"),
    }
    for (section, key), values in allowed.items():
        value = getattr(getattr(cfg, section), key)
        if value not in values:
            raise ConfigError(f"[{section}] {key} = {value!r}; expected one of {values}")
    if bool(cfg.server.tls_cert) != bool(cfg.server.tls_key):
        raise ConfigError("[server] tls_cert and tls_key go together")
    if bool(cfg.delivery.push_client_cert) != bool(cfg.delivery.push_client_key):
        raise ConfigError("[delivery] push_client_cert and push_client_key go together")
    if cfg.server.tls_client_ca and not cfg.server.tls_cert:
        raise ConfigError("[server] tls_client_ca (mTLS) needs tls_cert and tls_key")
    positive = (
        ("server", "workers"),
        ("server", "max_uploads_per_system"),
        ("server", "max_large_uploads_per_system"),
        ("server", "max_large_uploads"),
        ("intake", "large_examinations"),
    )
    for section, key in positive:
        if getattr(getattr(cfg, section), key) < 1:
            raise ConfigError(f"[{section}] {key} must be at least 1")
    if cfg.blobs.min_free_mb < 0:
        raise ConfigError("[blobs] min_free_mb must be 0 (no reserve) or more")
    _check_examiners(cfg.intake)
    if cfg.server.workers > 1 and (cfg.store.kind, cfg.broker.kind) != ("postgres", "rabbitmq"):
        raise ConfigError(
            "[server] workers > 1 needs store kind = postgres and broker kind = rabbitmq "
            "(the embedded SQLite store and in-process broker belong to one process)"
        )
    cfg.workday.calendar()  # ConfigError if it is wrong
    _check_trust(cfg.trust)
    up = cfg.upstream
    if up.kind == "vxp" and not (up.url and up.system_id and up.secret):
        raise ConfigError("[upstream] kind = vxp needs url, system_id and secret")
    if cfg.vxp.base_path and not cfg.vxp.base_path.startswith("/"):
        raise ConfigError("[vxp] base_path must start with / (or be empty)")


def _check_trust(t: TrustConfig) -> None:
    for url in t.crl_url_list():
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"[trust] crl_urls: {url!r} is not an http(s) address")
    if t.crl_max_bytes < 1 or t.crl_timeout_s <= 0 or t.crl_retry_s <= 0:
        raise ConfigError("[trust] crl_max_bytes, crl_timeout_s and crl_retry_s must be positive")
    if t.ocsp_timeout_s <= 0 or t.ocsp_max_age_s <= 0 or t.ocsp_retry_s <= 0:
        raise ConfigError(
            "[trust] ocsp_timeout_s, ocsp_max_age_s and ocsp_retry_s must be positive"
        )
