-- Replies to chats, sent through each chat's channel: queued with their message (a `sent` message
-- of the chat), claimed under a lease and a fencing token, and kept with the channel's answer.
CREATE TABLE replies (
    id              INTEGER PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    chat_id         INTEGER NOT NULL,
    source_key      TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    -- What to send (JSON), kept only until it is sent or given up.
    body            TEXT,
    idempotency_key TEXT,
    actor           TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When it is due; while it is claimed, when the claim's lease runs out.
    next_attempt_at INTEGER NOT NULL,
    lease_token     INTEGER,
    vendor_id       TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (chat_id, message_id)
);
CREATE INDEX replies_due ON replies (next_attempt_at) WHERE status = 'queued';
CREATE INDEX replies_by_key ON replies (chat_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX replies_by_vendor_id ON replies (workspace_id, source_key, vendor_id) WHERE vendor_id IS NOT NULL;
-- Where a workspace's JSON API chats are answered: replies are posted there, signed with the secret.
ALTER TABLE workspaces ADD COLUMN reply_url TEXT;
ALTER TABLE workspaces ADD COLUMN reply_secret TEXT;
