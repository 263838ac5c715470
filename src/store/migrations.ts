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
];
