-- Replays: a webhook's history sent again, as its granularity would have bundled it. A replay is
-- planned a batch of chats at a time (`cursor`: the last chat id planned), its deliveries marked
-- with it and queued in lanes of their own.
CREATE TABLE webhook_replays (
    id           TEXT PRIMARY KEY,
    webhook_id   TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    chat_id      BIGINT,
    from_at      BIGINT NOT NULL,
    to_at        BIGINT NOT NULL,
    status       TEXT NOT NULL,
    cursor       BIGINT NOT NULL DEFAULT 0,
    chats        BIGINT NOT NULL DEFAULT 0,
    bundles      BIGINT NOT NULL DEFAULT 0,
    messages     BIGINT NOT NULL DEFAULT 0,
    calls        BIGINT NOT NULL DEFAULT 0,
    actor        TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX webhook_replays_planning ON webhook_replays (created_at) WHERE status = 'planning';
ALTER TABLE deliveries ADD COLUMN replay_id TEXT;
-- A replay's deliveries, by status (its progress). The queue claims the due heads of live lanes
-- first and those of replay lanes only with room to spare, each from an index of its own, so a
-- replay's backlog is never read past by a claim of live deliveries.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE status = 'pending' AND replay_id IS NULL;
CREATE INDEX deliveries_of_replay ON deliveries (replay_id, status) WHERE replay_id IS NOT NULL;
CREATE INDEX deliveries_replay_due ON deliveries (next_attempt_at, seq)
    WHERE status = 'pending' AND replay_id IS NOT NULL;
