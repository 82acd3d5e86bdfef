-- Conversations: for webhooks whose granularity is `conversation`, each chat's open conversation
-- (one per webhook and chat), with the deadline at which it closes unless another message comes.
-- Finding what is due is a range of the deadline index, whatever the number of open ones.
CREATE TABLE conversations (
    id           INTEGER PRIMARY KEY,
    webhook_id   TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    chat_id      INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    -- When its first and latest messages were received: it holds the chat's messages received
    -- from `first_at` on (and before `until`, when a settings change ended it).
    first_at     INTEGER NOT NULL,
    last_at      INTEGER NOT NULL,
    until        INTEGER,
    silence_ms   INTEGER NOT NULL,
    max_ms       INTEGER NOT NULL,
    -- MIN(first_at + max_ms, last_at + silence_ms), or sooner when something ended it.
    deadline     INTEGER NOT NULL,
    -- What ended it before its deadline: session_end or flush.
    ended_by     TEXT
);
CREATE UNIQUE INDEX conversations_open ON conversations (webhook_id, chat_id) WHERE until IS NULL;
CREATE INDEX conversations_due ON conversations (deadline);
CREATE INDEX conversations_of_workspace ON conversations (workspace_id, deadline);
CREATE INDEX conversations_of_chat ON conversations (chat_id);
ALTER TABLE workspaces ADD COLUMN conversation_silence_ms INTEGER NOT NULL DEFAULT 1800000;
ALTER TABLE workspaces ADD COLUMN conversation_max_ms INTEGER NOT NULL DEFAULT 86400000;
ALTER TABLE webhooks ADD COLUMN conversation_silence_ms INTEGER;
ALTER TABLE webhooks ADD COLUMN conversation_max_ms INTEGER;
-- No window close takes a message received before this: set when a webhook stops bundling by
-- conversation, whose messages until then its conversations hold.
ALTER TABLE webhooks ADD COLUMN windows_from INTEGER NOT NULL DEFAULT 0;
