-- Faults that must end in a clear state: rejected deliveries, fencing, flushes cut short, e-mails
-- that cannot be sent, and a probe that proves the store can still commit.

-- A delivery the endpoint keeps rejecting (a 4xx other than 408, 409, 425, 429) is given up after
-- `delivery.reject_after` rejections: status 'failed', so its chat's next delivery can go out.
-- `retry_since` is when retrying (re)started: creation, or the last manual resend; the retention
-- period counts from it.
ALTER TABLE deliveries ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN last_status INTEGER;
ALTER TABLE deliveries ADD COLUMN retry_since INTEGER;
UPDATE deliveries SET retry_since = created_at;
-- Fencing: each claim writes its own token; only the holder of that token may record the result.
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER;
-- A webhook's deliveries, newest first, for the deliveries list.
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, seq);

-- `delivery.rate_per_webhook` as a token bucket kept with the webhook: claims take tokens, so
-- nothing waits for the limiter while holding a lease, and every claimer shares one bucket.
ALTER TABLE webhooks ADD COLUMN rate_tokens REAL;
ALTER TABLE webhooks ADD COLUMN rate_at INTEGER;
-- When the owner was last told that a delivery of this webhook was given up (at most once a day).
ALTER TABLE webhooks ADD COLUMN gave_up_notice_at INTEGER;
-- A close in progress that is a flush resumes as one.
ALTER TABLE webhooks ADD COLUMN closing_flush INTEGER NOT NULL DEFAULT 0;

-- What an e-mail is about (for its activity row), and e-mails the server refused for good.
ALTER TABLE outbox ADD COLUMN workspace_id TEXT;
ALTER TABLE outbox ADD COLUMN webhook_id TEXT;
ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Readiness writes here through the same path as every commit: if this cannot commit, nothing can.
CREATE TABLE health (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
INSERT INTO health (id, probed_at) VALUES (1, 0);
