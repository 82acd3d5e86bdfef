-- The store's statements are now the same text on SQLite and PostgreSQL, and SQLite uses a
-- partial index only when a query says what the index says: this one now says it as
-- PostgreSQL's does.
DROP INDEX chats_expiring;
CREATE INDEX chats_expiring ON chats (reply_window_expires_at) WHERE NOT expiry_announced;
