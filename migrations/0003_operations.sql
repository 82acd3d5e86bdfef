-- Running in production: the activity log beyond attempts, the e-mail outbox, retention.

-- What happened to a webhook besides delivery attempts: 'disabled', 'enabled',
-- 'config_changed', 'test'; and, workspace-wide (webhook_id NULL), 'skipped' messages.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    webhook_id   TEXT REFERENCES webhooks (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL              -- JSON
);
CREATE INDEX events_by_webhook ON events (webhook_id, at);
CREATE INDEX events_by_workspace ON events (workspace_id, at) WHERE webhook_id IS NULL;
CREATE INDEX events_by_time ON events (at);

CREATE INDEX attempts_by_webhook_time ON attempts (webhook_id, attempted_at);
CREATE INDEX attempts_by_time ON attempts (attempted_at);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- Test sends are attempts that belong to no queued delivery and never count towards a disable.
ALTER TABLE attempts ADD COLUMN test INTEGER NOT NULL DEFAULT 0;

-- E-mails waiting for the SMTP server, kept until it has taken them: an outage delays, never loses.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
