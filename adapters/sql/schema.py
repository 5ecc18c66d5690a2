"""Schema migrations, one list for both SQL stores.

Each migration is applied once, in order, inside a transaction of its own, and
recorded in ``schema_version``; on PostgreSQL an index on a busy table is built online
instead (``OnlineIndex``). The few dialect differences are tokens: ``{serial_pk}`` (a
never-reused integer key), ``{bool}``, ``{blob}`` and ``{online}``.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgres"]


class PostgresOnly(str):
    """A migration statement that exists only on PostgreSQL (a server-side function for
    a hot path; SQLite runs the same steps in-process, where a round trip costs nothing)."""


class OnlineIndex(str):
    """``CREATE INDEX`` that PostgreSQL builds ``CONCURRENTLY``, outside any transaction:
    writes to the table go on while it is built, where a plain ``CREATE INDEX`` holds them
    back until it ends (minutes, on a large table of a hub being upgraded). A migration
    holding one holds nothing else: what ran before it in a transaction could not run
    again after a failure in between. SQLite builds it plainly, in the migration's
    transaction (one process owns the file; it builds before it serves)."""

    name: str

    def __new__(cls, name: str, definition: str) -> OnlineIndex:
        made = super().__new__(cls, f"CREATE INDEX {{online}}{name} {definition}")
        made.name = name
        return made


_TOKENS: dict[Dialect, dict[str, str]] = {
    "sqlite": {
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bool": "INTEGER",
        "blob": "BLOB",
        "online": "",
    },
    "postgres": {
        "serial_pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "bool": "INTEGER",
        "blob": "BYTEA",
        # A build interrupted before (a crash, a timeout) left an invalid index of that
        # name: the PostgreSQL store drops it first (``_build_online``).
        "online": "CONCURRENTLY IF NOT EXISTS ",
    },
}

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: directory, packages, deliveries, ledger events, outbox
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('directory_version', 1)",
        "CREATE TABLE systems (system_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "role TEXT NOT NULL, signature_policy TEXT)",
        "CREATE TABLE organs (organ_id TEXT PRIMARY KEY, name TEXT NOT NULL, system_id TEXT, "
        "location TEXT NOT NULL, parent TEXT, closed {bool} NOT NULL DEFAULT 0, push_url TEXT)",
        "CREATE INDEX organs_system ON organs (system_id)",
        "CREATE TABLE organ_aliases (alias TEXT PRIMARY KEY, organ_id TEXT NOT NULL)",
        "CREATE TABLE credentials (token_id TEXT PRIMARY KEY, system_id TEXT NOT NULL, "
        "secret_sha256 TEXT NOT NULL, created_us BIGINT NOT NULL, "
        "revoked {bool} NOT NULL DEFAULT 0)",
        "CREATE TABLE cert_bindings (fingerprint TEXT NOT NULL, organ_id TEXT NOT NULL, "
        "PRIMARY KEY (fingerprint, organ_id))",
        "CREATE TABLE packages (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size BIGINT NOT NULL, "
        "kind TEXT NOT NULL, sender_organ TEXT NOT NULL, system_id TEXT NOT NULL, "
        "received_us BIGINT NOT NULL, document_id TEXT, code TEXT, subject TEXT, "
        "business_type INTEGER, status_code TEXT, response_for_organ TEXT, "
        "response_for_doc TEXT, related_package_id TEXT, signature TEXT NOT NULL, "
        "dedupe_key TEXT UNIQUE, UNIQUE (sender_organ, sha256))",
        "CREATE INDEX packages_document ON packages (sender_organ, document_id)",
        "CREATE INDEX packages_received ON packages (received_us)",
        "CREATE TABLE deliveries (seq {serial_pk}, id TEXT NOT NULL UNIQUE, "
        "package_id TEXT NOT NULL, recipient TEXT NOT NULL, route TEXT NOT NULL, "
        "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_us BIGINT, "
        "updated_us BIGINT NOT NULL, last_error TEXT, business_status TEXT, "
        "business_status_us BIGINT, UNIQUE (package_id, recipient))",
        "CREATE INDEX deliveries_inbox ON deliveries (recipient, state, seq)",
        "CREATE INDEX deliveries_state ON deliveries (state, updated_us)",
        "CREATE TABLE events (seq {serial_pk}, type TEXT NOT NULL, at_us BIGINT NOT NULL, "
        "package_id TEXT, delivery_id TEXT, organ TEXT, actor TEXT, data TEXT NOT NULL)",
        "CREATE INDEX events_package ON events (package_id, seq)",
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, routing_key TEXT NOT NULL, "
        "body TEXT NOT NULL, created_us BIGINT NOT NULL)",
        "CREATE INDEX outbox_created ON outbox (created_us)",
    ),
    # 2: the VXP face and the upstream axis
    (
        "ALTER TABLE systems ADD COLUMN vxp_strict {bool} NOT NULL DEFAULT 0",
        "ALTER TABLE systems ADD COLUMN may_register {bool} NOT NULL DEFAULT 0",
        "ALTER TABLE organs ADD COLUMN modified_us BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE organs ADD COLUMN version BIGINT NOT NULL DEFAULT 0",
        "CREATE TABLE vxp_secrets (system_id TEXT PRIMARY KEY, sealed TEXT NOT NULL, "
        "created_us BIGINT NOT NULL)",
        "CREATE TABLE vxp_stamps (system_id TEXT NOT NULL, stamp TEXT NOT NULL, "
        "seen_us BIGINT NOT NULL, PRIMARY KEY (system_id, stamp))",
        "CREATE INDEX vxp_stamps_seen ON vxp_stamps (seen_us)",
        "CREATE INDEX packages_system ON packages (system_id, received_us)",
        "CREATE INDEX packages_sha256 ON packages (sha256)",
    ),
    # 3: the sealed ledger, audit queries, retention
    (
        "CREATE TABLE ledger_info (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, "
        "created_us BIGINT NOT NULL)",
        "CREATE TABLE ledger_tiles (level INTEGER NOT NULL, idx BIGINT NOT NULL, "
        "hashes {blob} NOT NULL, PRIMARY KEY (level, idx))",
        "CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, root {blob} NOT NULL, "
        "at_us BIGINT NOT NULL, origin TEXT NOT NULL, key_id TEXT NOT NULL, "
        "signature {blob} NOT NULL)",
        "CREATE TABLE ledger_keys (key_id TEXT PRIMARY KEY, cert_pem TEXT NOT NULL)",
        # Partial: maintained only for refusals (the dashboard counts them); events are the
        # hottest insert, so no general index on type.
        "CREATE INDEX events_refused ON events (at_us) WHERE type = 'refused'",
        "CREATE INDEX packages_sender ON packages (sender_organ, received_us, id)",
        "CREATE INDEX packages_doc ON packages (document_id)",
        "CREATE INDEX packages_code ON packages (code)",
        "ALTER TABLE packages ADD COLUMN purged_us BIGINT",
        "ALTER TABLE packages ADD COLUMN signature_outcome TEXT",
        "DROP INDEX packages_received",  # superseded: the audit order needs the id too
        "CREATE INDEX packages_received_id ON packages (received_us, id)",
        "CREATE TABLE legal_holds (package_id TEXT PRIMARY KEY, reason TEXT NOT NULL, "
        "actor TEXT NOT NULL, at_us BIGINT NOT NULL)",
    ),
    # 4: a delivery transition in one round trip on PostgreSQL: the write barrier, the
    # conditional update and its ledger event in one call (four round trips before).
    (
        PostgresOnly(
            "CREATE FUNCTION lt_transition(p_id TEXT, p_from TEXT[], p_to TEXT, "
            "p_attempts INTEGER, p_next BIGINT, p_error TEXT, e_type TEXT, e_at BIGINT, "
            "e_package TEXT, e_delivery TEXT, e_organ TEXT, e_actor TEXT, e_data TEXT, "
            "p_barrier BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$\n"
            "DECLARE n INTEGER;\n"
            "BEGIN\n"
            "  PERFORM pg_advisory_xact_lock_shared(p_barrier);\n"
            "  UPDATE deliveries SET state = p_to, updated_us = e_at,\n"
            "    attempts = COALESCE(p_attempts, attempts), next_attempt_us = p_next,\n"
            "    last_error = COALESCE(p_error, last_error)\n"
            "    WHERE id = p_id AND state = ANY(p_from);\n"
            "  GET DIAGNOSTICS n = ROW_COUNT;\n"
            "  IF n > 0 THEN\n"
            "    INSERT INTO events (type, at_us, package_id, delivery_id, organ, actor, data)\n"
            "      VALUES (e_type, e_at, e_package, e_delivery, e_organ, e_actor, e_data);\n"
            "  END IF;\n"
            "  RETURN n;\n"
            "END $$"
        ),
    ),
    # 5: TLS client certificates (mTLS) that authenticate a connected system
    (
        "CREATE TABLE client_certs (fingerprint TEXT PRIMARY KEY, system_id TEXT NOT NULL, "
        "subject TEXT NOT NULL, created_us BIGINT NOT NULL)",
    ),
    # 6: an accepted package's whole commit in one round trip on PostgreSQL (six before):
    # the write barrier, the package (or which package it duplicates), its deliveries, its
    # ledger events in order, its outbox rows and a business status, in one call.
    (
        PostgresOnly(
            "CREATE FUNCTION lt_intake(p JSONB, ds JSONB, es JSONB, os JSONB, st JSONB, "
            "p_barrier BIGINT) RETURNS TEXT[] LANGUAGE plpgsql AS $$\n"
            "DECLARE n INTEGER; found TEXT;\n"
            "BEGIN\n"
            "  PERFORM pg_advisory_xact_lock_shared(p_barrier);\n"
            "  INSERT INTO packages (id, sha256, size, kind, sender_organ, system_id,\n"
            "    received_us, document_id, code, subject, business_type, status_code,\n"
            "    response_for_organ, response_for_doc, related_package_id, signature,\n"
            "    dedupe_key, signature_outcome)\n"
            "  SELECT r.* FROM jsonb_to_record(p) AS r(id TEXT, sha256 TEXT, size BIGINT,\n"
            "    kind TEXT, sender_organ TEXT, system_id TEXT, received_us BIGINT,\n"
            "    document_id TEXT, code TEXT, subject TEXT, business_type INTEGER,\n"
            "    status_code TEXT, response_for_organ TEXT, response_for_doc TEXT,\n"
            "    related_package_id TEXT, signature TEXT, dedupe_key TEXT,\n"
            "    signature_outcome TEXT)\n"
            "  ON CONFLICT DO NOTHING;\n"
            "  GET DIAGNOSTICS n = ROW_COUNT;\n"
            "  IF n = 0 THEN\n"
            "    SELECT id INTO found FROM packages\n"
            "      WHERE sender_organ = p->>'sender_organ' AND sha256 = p->>'sha256';\n"
            "    IF found IS NOT NULL THEN RETURN ARRAY['same_bytes', found]; END IF;\n"
            "    SELECT id INTO found FROM packages WHERE dedupe_key = p->>'dedupe_key';\n"
            "    RETURN ARRAY['same_key', found];\n"
            "  END IF;\n"
            "  INSERT INTO deliveries (id, package_id, recipient, route, state, updated_us)\n"
            "  SELECT r.* FROM jsonb_to_recordset(ds) AS r(id TEXT, package_id TEXT,\n"
            "    recipient TEXT, route TEXT, state TEXT, updated_us BIGINT);\n"
            "  INSERT INTO events (type, at_us, package_id, delivery_id, organ, actor, data)\n"
            "  SELECT r.type, r.at_us, r.package_id, r.delivery_id, r.organ, r.actor, r.data\n"
            "  FROM jsonb_array_elements(es) WITH ORDINALITY AS a(v, i),\n"
            "    jsonb_to_record(a.v) AS r(type TEXT, at_us BIGINT, package_id TEXT,\n"
            "    delivery_id TEXT, organ TEXT, actor TEXT, data TEXT)\n"
            "  ORDER BY a.i;\n"
            "  INSERT INTO outbox (id, routing_key, body, created_us)\n"
            "  SELECT r.* FROM jsonb_to_recordset(os) AS r(id TEXT, routing_key TEXT,\n"
            "    body TEXT, created_us BIGINT);\n"
            "  IF st IS NOT NULL THEN\n"
            "    UPDATE deliveries SET business_status = st->>'status_code',\n"
            "      business_status_us = (st->>'at_us')::BIGINT\n"
            "    WHERE package_id = st->>'package_id' AND recipient = st->>'recipient'\n"
            "      AND (business_status_us IS NULL\n"
            "        OR business_status_us < (st->>'at_us')::BIGINT\n"
            "        OR (business_status_us = (st->>'at_us')::BIGINT\n"
            "          AND business_status <= st->>'status_code'));\n"
            "  END IF;\n"
            "  RETURN NULL;\n"
            "END $$"
        ),
    ),
    # 7: group commits on PostgreSQL: many transitions, or many intake commits, in one
    # statement (one transaction), each item exactly as its single call would do it.
    (
        PostgresOnly(
            "CREATE FUNCTION lt_transitions(p_id TEXT[], p_from TEXT[], p_to TEXT[], "
            "p_attempts INTEGER[], p_next BIGINT[], p_error TEXT[], e_type TEXT[], "
            "e_at BIGINT[], e_package TEXT[], e_delivery TEXT[], e_organ TEXT[], "
            "e_actor TEXT[], e_data TEXT[], p_barrier BIGINT) "
            "RETURNS INTEGER[] LANGUAGE plpgsql AS $$\n"
            "DECLARE changed INTEGER[] := '{{}}';\n"
            "BEGIN\n"
            "  FOR i IN 1..cardinality(p_id) LOOP\n"
            "    changed := changed || lt_transition(p_id[i], string_to_array(p_from[i], ','),\n"
            "      p_to[i], p_attempts[i], p_next[i], p_error[i], e_type[i], e_at[i],\n"
            "      e_package[i], e_delivery[i], e_organ[i], e_actor[i], e_data[i], p_barrier);\n"
            "  END LOOP;\n"
            "  RETURN changed;\n"
            "END $$"
        ),
        PostgresOnly(
            "CREATE FUNCTION lt_intakes(items JSONB, p_barrier BIGINT) "
            "RETURNS JSONB LANGUAGE plpgsql AS $$\n"
            "DECLARE r JSONB; answers JSONB := '[]';\n"
            "BEGIN\n"
            "  FOR r IN SELECT value FROM jsonb_array_elements(items) LOOP\n"
            "    answers := answers || jsonb_build_array(to_jsonb(lt_intake(r->'p', r->'ds',\n"
            "      r->'es', r->'os', NULLIF(r->'st', 'null'::jsonb), p_barrier)));\n"
            "  END LOOP;\n"
            "  RETURN answers;\n"
            "END $$"
        ),
    ),
    # 8: the networks a system may connect from (comma-separated CIDRs; empty: any)
    ("ALTER TABLE systems ADD COLUMN networks TEXT NOT NULL DEFAULT ''",),
    # 9: a system an administrator suspended: why (NULL: active) and since when
    (
        "ALTER TABLE systems ADD COLUMN suspended TEXT",
        "ALTER TABLE systems ADD COLUMN suspended_us BIGINT",
    ),
    # 10: when a bearer token stops being accepted (NULL: never; tokens issued before)
    ("ALTER TABLE credentials ADD COLUMN expires_us BIGINT",),
    # 11: a system's VXP secret before the last rotation, accepted until a time (an overlap
    # for the agency to change its SDK configuration); NULL: none
    (
        "ALTER TABLE vxp_secrets ADD COLUMN previous TEXT",
        "ALTER TABLE vxp_secrets ADD COLUMN previous_until_us BIGINT",
    ),
    # 12: the deliveries waiting in an inbox (INBOX_STATES, local), by recipient in
    # order: a page of an inbox reads its own rows, however long the recipient's backlog
    # or history (``deliveries_inbox`` has the state before the order, so every waiting
    # delivery was read and sorted for each page). Its terms are repeated word for word
    # by the inbox queries (``IN_INBOX_TERMS`` in ``adapters/sql/store.py``): both engines use a
    # partial index only for queries whose own terms imply its WHERE.
    # Built online: the table is the hub's busiest.
    (
        OnlineIndex(
            "deliveries_waiting",
            "ON deliveries (recipient, seq) "
            "WHERE state IN ('available', 'fetched') AND route = 'local'",
        ),
    ),
)


def online_indexes(migration: tuple[str, ...]) -> list[OnlineIndex]:
    """The migration's indexes built online; a migration has these or other statements,
    never both."""
    online = [s for s in migration if isinstance(s, OnlineIndex)]
    if online and len(online) != len(migration):
        raise ValueError("a migration with an online index holds nothing else")
    return online


def statements(dialect: Dialect, migration: tuple[str, ...]) -> list[str]:
    tokens = _TOKENS[dialect]
    return [
        str(s).format(**tokens)
        for s in migration
        if dialect == "postgres" or not isinstance(s, PostgresOnly)
    ]
