-- What a WeChat chat may still be sent after its 48-hour reply window: the source's account type
-- and the messages the business sent after the window, counted per allowance period (its start,
-- ms). The chats of WeChat sources stored before default to a service account, as new sources do.
ALTER TABLE chats ADD COLUMN account_type TEXT;
ALTER TABLE chats ADD COLUMN replies_period BIGINT;
ALTER TABLE chats ADD COLUMN replies_used BIGINT NOT NULL DEFAULT 0;
UPDATE chats SET account_type = 'service'
WHERE source_key IN (SELECT id FROM sources WHERE kind = 'wechat');
