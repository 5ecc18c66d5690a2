"""The shipped Prometheus alerting rules name only metrics and labels the hub exposes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from hub.edxml import demo
from tests.service.harness import A, B, HubUnderTest, signed

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "lienthong-alerts.yml"
SELECTOR = re.compile(r"\b(lienthong_[a-z_]+)(?:\{([^}]*)\})?")
LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


async def _exposed(hut: HubUnderTest) -> dict[str, set[str]]:
    """Sample name -> its label names, from a hub that has taken a package and answered
    an error (so the labelled series exist)."""
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    assert (await hut.submit("sys-a", data, "edoc")).status == 202
    assert (await hut.submit("sys-a", b"<not-xml", "edoc")).status == 400
    await hut.hub.update_gauges()
    assert hut.hub.crl_refresher is not None  # one CRL address that does not answer
    (fetch,) = await hut.hub.crl_refresher.round({"http://127.0.0.1:9/ca.crl": None})
    assert fetch.result == "failed"
    r = await hut.client.get("/metrics", headers=hut.auth("auditor"))
    assert r.status == 200
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(await r.text()):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


async def test_every_alert_names_exposed_metrics_and_labels(hut: HubUnderTest) -> None:
    rules = _rules()
    assert len(rules) >= 10
    exposed = await _exposed(hut)
    for rule in rules:
        assert re.fullmatch(r"Lienthong[A-Za-z]+", rule["alert"]), rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        selectors = SELECTOR.findall(rule["expr"])
        assert selectors, f"{rule['alert']} names no lienthong metric"
        for name, matchers in selectors:
            assert name in exposed, f"{rule['alert']}: {name} is not in /metrics"
            for label in LABEL.findall(matchers):
                assert label in exposed[name], f"{rule['alert']}: {name}{{{label}}}"
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_rules_file_is_what_the_deployment_guide_names() -> None:
    guide = (RULES.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "prometheus/lienthong-alerts.yml" in guide
    names = [r["alert"] for r in _rules()]
    assert len(names) == len(set(names)), "alert names are unique"
