-- Whether a channel's vendor reaches us: requests to each source's inbound URL per ten minutes
-- (added up from every daemon), the last request, and the last one refused with why.
CREATE TABLE source_traffic (
    source_id TEXT NOT NULL,
    bucket    BIGINT NOT NULL,
    requests  BIGINT NOT NULL,
    PRIMARY KEY (source_id, bucket)
);
ALTER TABLE sources ADD COLUMN last_request_at BIGINT;
ALTER TABLE sources ADD COLUMN last_refusal_at BIGINT;
ALTER TABLE sources ADD COLUMN last_refusal_status BIGINT;
ALTER TABLE sources ADD COLUMN last_refusal_reason TEXT;
