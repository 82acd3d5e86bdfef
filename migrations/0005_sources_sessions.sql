-- Inbound channels (sources) and chat sessions.

-- A connected channel of a workspace. Its id is the unguessable part of its inbound URL.
CREATE TABLE sources (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,      -- twilio | whatsapp | wechat | chatwoot | zoho_desk
    name              TEXT NOT NULL,
    account_full_name TEXT,
    account_email     TEXT,
    account_phone     TEXT,
    credentials       TEXT NOT NULL,      -- JSON; never shown by the API
    enabled           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX sources_by_workspace ON sources (workspace_id);

-- Sessions: the status a channel reports (CREATED, OPEN, ON_PROGRESS, ON_HOLD, ENDED, BLOCKED),
-- the channel's own id for the conversation, and the reply window the channel allows after the
-- customer's last message. `expiry_announced = 0` means a SESSION_EXPIRED event is due when the
-- window lapses: the schedule lives here, so a restart does not lose it.
ALTER TABLE chats ADD COLUMN channel TEXT;
ALTER TABLE chats ADD COLUMN session_status TEXT;
ALTER TABLE chats ADD COLUMN session_id TEXT;
ALTER TABLE chats ADD COLUMN assignee_type TEXT;
ALTER TABLE chats ADD COLUMN last_customer_message_at INTEGER;
ALTER TABLE chats ADD COLUMN reply_window_expires_at INTEGER;
ALTER TABLE chats ADD COLUMN expiry_announced INTEGER NOT NULL DEFAULT 1;
CREATE INDEX chats_expiring ON chats (reply_window_expires_at) WHERE expiry_announced = 0;
