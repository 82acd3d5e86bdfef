-- An index no query needs, written on every attempt: a webhook's latest attempts are read in
-- attempt order through attempts_by_webhook_time. (messages_by_received stays here: the latest
-- receipt time of a workspace, read under its exclusive lock, is one entry of it.)
DROP INDEX attempts_by_webhook;
