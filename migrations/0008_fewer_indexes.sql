-- Indexes no query on this store needs, each written on every message or attempt: counting a
-- workspace's messages reads the unique (workspace_id, source_key, message_id) index, and a
-- webhook's latest attempts are read in attempt order through attempts_by_webhook_time.
DROP INDEX messages_by_received;
DROP INDEX attempts_by_webhook;
