-- A source's inbound URL gets a key of its own, so that the URL can be rotated while the source
-- (its id, its chats and messages) stays. A source made before keeps its id as its key, so the
-- URLs pasted into the channels keep working until an admin rotates them.
ALTER TABLE sources ADD COLUMN inbound_key TEXT;
UPDATE sources SET inbound_key = id;
CREATE UNIQUE INDEX sources_by_inbound_key ON sources (inbound_key);

-- Signed WeChat pushes and URL checks of the last minutes: a (timestamp, nonce) pair whose
-- signature checked out may come back only with the body it first came with. In the database,
-- so that a replay to another daemon is refused too.
CREATE TABLE replays (
    source_id TEXT NOT NULL,
    signed    TEXT NOT NULL,      -- the timestamp and nonce, as signed
    digest    BLOB NOT NULL,      -- SHA-256 of the body it first came with
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (source_id, signed)
);
CREATE INDEX replays_by_time ON replays (seen_at);
