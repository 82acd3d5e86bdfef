-- Media: a message's attachments as the channel described them (a JSON list; NULL for a text
-- message), and whether a webhook takes messages that carry some.
ALTER TABLE messages ADD COLUMN attachments TEXT;
ALTER TABLE webhooks ADD COLUMN media TEXT NOT NULL DEFAULT 'skip' CHECK (media IN ('skip', 'placeholder'));
