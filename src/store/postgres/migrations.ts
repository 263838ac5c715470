/**
 * The Postgres schema, applied in order at start (schema_migrations records how many ran). It mirrors the
 * SQLite schema (../migrations.ts) as of its migration 5, with Postgres types: timestamps are BIGINT
 * milliseconds since the epoch, JSON is TEXT (stored byte for byte as SQLite stores it, so both stores
 * charge the same storage), sequences are identity columns. Never edit a shipped entry.
 */
export const PG_MIGRATIONS: string[] = [
  `
  CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE TABLE org_quotas (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, name)
  );
  -- Usage per org, metric and hour (ms since the epoch of the hour's start); docs/tenancy.md lists the metrics.
  CREATE TABLE usage (
    org_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    hour BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, metric, hour)
  );

  CREATE TABLE hqe_sessions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    step BIGINT NOT NULL DEFAULT 0,
    restart BIGINT NOT NULL DEFAULT 0,
    metrics TEXT,
    extra_steps BIGINT NOT NULL DEFAULT 0,
    checkpoint TEXT,
    event_bytes BIGINT NOT NULL DEFAULT 0,
    ended_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX hqe_sessions_org ON hqe_sessions(org_id, created_at);
  CREATE INDEX hqe_sessions_ended ON hqe_sessions(ended_at) WHERE ended_at IS NOT NULL;
  -- Active sessions (every node scans them for ones whose owner is gone).
  CREATE INDEX hqe_sessions_active ON hqe_sessions((id COLLATE "C")) WHERE status IN ('initializing', 'running');
  -- The digest an event body is deduplicated on (hqe_session_events). convert_to is only STABLE, but a
  -- database's encoding is fixed when it is created, so a body's digest never changes: IMMUTABLE, as a
  -- generated column requires. Qualified names: the function means the same whatever the search_path.
  CREATE FUNCTION utf8_sha224(body TEXT) RETURNS BYTEA LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT pg_catalog.sha224(pg_catalog.convert_to(body, 'UTF8')) $$;
  -- Everything a session emitted, in order; seq is the SSE event id. An event is stored once: a btree entry
  -- holds at most ~2.7 kB, so uniqueness is over the body's digest rather than the body itself.
  CREATE TABLE hqe_session_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES hqe_sessions(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step BIGINT NOT NULL,
    restart BIGINT NOT NULL,
    body TEXT NOT NULL,
    body_digest BYTEA NOT NULL GENERATED ALWAYS AS (utf8_sha224(body)) STORED,
    UNIQUE (session_id, kind, step, restart, body_digest)
  );
  CREATE INDEX hqe_session_events_kind ON hqe_session_events(session_id, kind, seq);
  CREATE INDEX hqe_session_events_seq ON hqe_session_events(session_id, seq);

  CREATE TABLE idempotency_keys (
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT,
    boot_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subject, key)
  );
  CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

  CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX webhooks_org ON webhooks(org_id, created_at);
  CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
  CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at);

  CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    epoch BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 0,
    checkpoint TEXT,
    checkpoint_version BIGINT,
    delta_bytes BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX spaces_org ON spaces(org_id, created_at);
  -- The delta log: every accepted delta, committed before it is acknowledged. Versions are contiguous.
  CREATE TABLE space_deltas (
    space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    from_version BIGINT NOT NULL,
    ops TEXT NOT NULL,
    paths TEXT NOT NULL,
    author TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (space_id, version)
  );
  CREATE TABLE space_members (
    space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT,
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    removed_at BIGINT,
    expires_at BIGINT,
    PRIMARY KEY (space_id, id)
  );
  CREATE INDEX space_members_present ON space_members(expires_at) WHERE left_at IS NULL;
  `,
  `
  -- Cluster mode (docs/scaling.md): the nodes, and who simulates each live space and running HQE session.
  CREATE TABLE cluster_nodes (
    id TEXT PRIMARY KEY,
    boot_id TEXT NOT NULL,
    url TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
  );
  -- resource: 'space:<id>' or 'session:<id>'; epoch: the fencing token, +1 each time the lease changes hands.
  CREATE TABLE leases (
    resource TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX leases_node ON leases(node_id);
  CREATE INDEX leases_org ON leases(org_id);
  CREATE INDEX cluster_nodes_boot ON cluster_nodes(boot_id);
  `,
];
