-- The spine: workspaces, webhooks, chats, messages, the delivery queue and its attempts.
-- Instants are INTEGER milliseconds since the Unix epoch (UTC), so they compare as numbers.

CREATE TABLE workspaces (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    owner_email       TEXT NOT NULL,
    timezone          TEXT NOT NULL,
    granularity       TEXT NOT NULL,
    account_full_name TEXT,
    account_email     TEXT,
    account_phone     TEXT,
    ingest_key        TEXT NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE webhooks (
    id                   TEXT PRIMARY KEY,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url                  TEXT NOT NULL,
    granularity          TEXT,              -- NULL: the workspace's
    enabled              INTEGER NOT NULL,
    secret               TEXT,
    sub_messages         INTEGER NOT NULL,
    sub_session_status   INTEGER NOT NULL,
    timeout_ms           INTEGER,           -- NULL: the configured default
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX webhooks_by_workspace ON webhooks (workspace_id);

CREATE TABLE chats (
    id                INTEGER PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_key        TEXT NOT NULL,         -- 'api' or a source id
    external_id       TEXT NOT NULL,
    full_name         TEXT,
    phone             TEXT,
    is_group          INTEGER,               -- NULL: never said (read as false)
    responsible_name  TEXT,
    responsible_email TEXT,
    token             TEXT NOT NULL UNIQUE,  -- transcript link
    first_seen_at     INTEGER NOT NULL,
    first_message_seq INTEGER,               -- decides is_new_chat
    UNIQUE (workspace_id, source_key, external_id)
);

CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    chat_id         INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    source_key      TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    direction       TEXT NOT NULL,
    ts              INTEGER NOT NULL,        -- the message's own timestamp
    received_at     INTEGER NOT NULL,        -- decides its window
    sender_name     TEXT,
    sender_phone    TEXT,
    recipient_name  TEXT,
    recipient_phone TEXT,
    text            TEXT NOT NULL,
    account         TEXT,                    -- JSON {full_name, email, phone}; NULL: the workspace's
    channel         TEXT NOT NULL,
    UNIQUE (workspace_id, source_key, message_id)
);
CREATE INDEX messages_by_chat ON messages (chat_id, ts);
CREATE INDEX messages_by_received ON messages (workspace_id, received_at);

-- The durable delivery queue. A row is one request body for one webhook: a single message now,
-- a bundle part later. `lease_until` marks a row as being sent; an expired lease is free again.
CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,    -- the webhook-id header
    kind            TEXT NOT NULL,           -- 'message' | 'bundle'
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    chat_id         INTEGER,                 -- ordering lane within the webhook
    payload         BLOB NOT NULL,
    status          TEXT NOT NULL,           -- 'pending' | 'delivered' | 'expired'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_lane ON deliveries (webhook_id, chat_id, seq) WHERE status = 'pending';

CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_seq     INTEGER NOT NULL,
    delivery_id      TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempted_at     INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status           INTEGER,
    response_excerpt TEXT,
    error            TEXT,
    request_headers  TEXT NOT NULL,
    request_body     BLOB NOT NULL
);
CREATE INDEX attempts_by_webhook ON attempts (webhook_id, id);
