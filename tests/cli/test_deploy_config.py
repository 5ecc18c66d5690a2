"""The shipped deployment configuration loads as written (no unknown or misspelt keys)."""

from __future__ import annotations

from pathlib import Path

from hub.config import load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_scaled_deployment_configuration_loads_with_secrets_from_the_environment() -> None:
    env = {
        "LIENTHONG_STORE_DSN": "postgresql://lienthong:pw@db:5432/lienthong",
        "LIENTHONG_BROKER_URL": "amqps://lienthong:pw@mq:5671/lienthong",
        "LIENTHONG_UPSTREAM_SECRET": "s3cret",
        "LIENTHONG_SERVER_PORT": "8082",
    }
    cfg = load(DEPLOY / "lienthong.toml", env)
    assert (cfg.store.kind, cfg.broker.kind, cfg.upstream.kind) == ("postgres", "rabbitmq", "vxp")
    assert cfg.server.port == 8082 and cfg.intake.default_policy == "required"
    assert cfg.ledger.retention_days == 3650 and cfg.trust.require_crl
    shown = str(cfg.redacted())
    assert "pw@" not in shown and "s3cret" not in shown
