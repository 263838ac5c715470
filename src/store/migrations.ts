/** Schema migrations, applied in order; user_version records how many ran. Never edit a shipped one. */
export const MIGRATIONS: string[] = [
  `
  CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE hqe_sessions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    restart INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,
    extra_steps INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX hqe_sessions_org ON hqe_sessions(org_id, created_at);
  -- Everything a session emitted, in order: snapshots, metrics and status changes. seq is the SSE event id.
  CREATE TABLE hqe_session_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES hqe_sessions(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    restart INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (session_id, kind, step, restart, body)
  );
  CREATE INDEX hqe_session_events_kind ON hqe_session_events(session_id, kind, seq);
  CREATE TABLE idempotency_keys (
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key)
  );
  CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at INTEGER NOT NULL
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
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
  `,
  `
  CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    checkpoint_version INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX spaces_org ON spaces(org_id, created_at);
  -- The delta log: every accepted delta, durable before it is acknowledged. Versions are contiguous.
  CREATE TABLE space_deltas (
    space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    from_version INTEGER NOT NULL,
    ops TEXT NOT NULL,
    paths TEXT NOT NULL,
    author TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, version)
  );
  CREATE TABLE space_members (
    space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT,
    joined_at INTEGER NOT NULL,
    left_at INTEGER,
    PRIMARY KEY (space_id, id)
  );
  `,
  `
  -- A removed member stays out: its session token is refused by REST and WebSocket until it expires.
  ALTER TABLE space_members ADD COLUMN removed_at INTEGER;
  -- When the member's newest session token expires: without a connection it leaves then.
  ALTER TABLE space_members ADD COLUMN expires_at INTEGER;
  -- The once-a-second sweep of expired members reads present ones only.
  CREATE INDEX space_members_present ON space_members(expires_at) WHERE left_at IS NULL;
  `,
  `
  -- Multi-tenant hardening (docs/tenancy.md).
  -- A revoked OAuth client's access tokens, and the session tokens it minted, are refused.
  ALTER TABLE oauth_clients ADD COLUMN revoked_at INTEGER;
  -- Idempotency keys belong to one credential (API key id, OAuth client id or space member id), not to
  -- the org; boot_id names the process that claimed a key, so a claim left by a process that died is
  -- released at the next start instead of answering 409 for a day. Stored responses are disposable.
  DROP TABLE idempotency_keys;
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
    created_at INTEGER NOT NULL,
    PRIMARY KEY (subject, key)
  );
  CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
  -- A session's events in order (stream replays): without it a read of all kinds sorts every event of the session.
  CREATE INDEX hqe_session_events_seq ON hqe_session_events(session_id, seq);
  -- Purge of old webhook deliveries.
  CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at);
  -- Storage charged to each session (bytes of stored event bodies) and when it ended (retention).
  ALTER TABLE hqe_sessions ADD COLUMN event_bytes INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE hqe_sessions ADD COLUMN ended_at INTEGER;
  UPDATE hqe_sessions SET event_bytes = (SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM hqe_session_events e WHERE e.session_id = hqe_sessions.id);
  UPDATE hqe_sessions SET ended_at = updated_at WHERE status NOT IN ('initializing', 'running', 'completed');
  CREATE INDEX hqe_sessions_ended ON hqe_sessions(ended_at) WHERE ended_at IS NOT NULL;
  -- Storage charged to each space (bytes of its retained delta log).
  ALTER TABLE spaces ADD COLUMN delta_bytes INTEGER NOT NULL DEFAULT 0;
  UPDATE spaces SET delta_bytes = (SELECT COALESCE(SUM(length(CAST(ops AS BLOB)) + length(CAST(paths AS BLOB))), 0) FROM space_deltas d WHERE d.space_id = spaces.id);
  -- Usage per org, metric and hour (ms since the epoch of the hour's start); docs/tenancy.md lists the metrics.
  CREATE TABLE usage (
    org_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    hour INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (org_id, metric, hour)
  );
  -- Per-org overrides of the quota defaults (resonance orgs set-quota).
  CREATE TABLE org_quotas (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (org_id, name)
  );
  `,
];
