-- Windows and bundles.

-- Per webhook: every message received before `bundled_before` has been bundled (or, for a webhook
-- without aggregation, delivered). A granularity change at `granularity_changed_at` moves what is
-- still buffered into the window open at that moment. A close in progress is resumable:
-- `closing_boundary` is the instant being closed up to, `closing_cursor` the last chat done.
ALTER TABLE webhooks ADD COLUMN bundled_before INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN granularity_changed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN closing_boundary INTEGER;
-- The last flush: it cut a window short, and what follows it in that window starts there.
ALTER TABLE webhooks ADD COLUMN flushed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN closing_cursor INTEGER;
UPDATE webhooks SET bundled_before = created_at, granularity_changed_at = created_at;

-- Which chats had messages since a moment: closing walks these, not the whole message table.
ALTER TABLE chats ADD COLUMN last_received_at INTEGER NOT NULL DEFAULT 0;
UPDATE chats SET last_received_at = COALESCE(
    (SELECT MAX(received_at) FROM messages WHERE messages.chat_id = chats.id), first_seen_at);
CREATE INDEX chats_by_activity ON chats (workspace_id, last_received_at);

-- A chat's messages by time of receipt, for cutting them into windows.
DROP INDEX messages_by_chat;
CREATE INDEX messages_by_chat ON messages (chat_id, received_at);

-- A bundle part is a delivery with its window; one webhook never gets two bundles for the same
-- chat, window and part, however often a close is retried.
ALTER TABLE deliveries ADD COLUMN window_end INTEGER;
ALTER TABLE deliveries ADD COLUMN part INTEGER;
CREATE UNIQUE INDEX deliveries_one_bundle
    ON deliveries (webhook_id, chat_id, window_end, part) WHERE kind = 'bundle';
