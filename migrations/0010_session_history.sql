-- Each chat's session history: every status a session took, when, and what moved it.
CREATE TABLE session_history (
    id           INTEGER PRIMARY KEY,
    chat_id      INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    -- message (a customer's message started it), reply (the business answered), reported (the
    -- source said so), earlier (the status a chat had when history began to be kept)
    cause        TEXT NOT NULL,
    source_key   TEXT NOT NULL,
    reply_status TEXT
);
CREATE INDEX session_history_by_chat ON session_history (chat_id, id);

INSERT INTO session_history (chat_id, at, from_status, to_status, cause, source_key)
SELECT id, first_seen_at, NULL, session_status, 'earlier', source_key FROM chats
WHERE session_status IS NOT NULL;
