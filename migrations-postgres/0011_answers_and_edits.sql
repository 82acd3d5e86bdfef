-- What customers and channels say beyond a message's words: the id of the button or list row a
-- customer's answer came from (its title is the message's text), when a channel last edited a
-- message (Chatwoot's message_updated), and whether the channel itself says the chat can be
-- answered now (Chatwoot's can_reply), which then stands for chatbundle's own reckoning.
ALTER TABLE messages ADD COLUMN reply_to_button TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE chats ADD COLUMN channel_can_reply BOOLEAN; -- NULL: the channel never said

-- A webhook's media choice gains `link`; the first column's CHECK names only the first two (and
-- SQLite cannot change a CHECK in place), so the choice moves to a column of its own.
ALTER TABLE webhooks ADD COLUMN media_choice TEXT NOT NULL DEFAULT 'skip';
UPDATE webhooks SET media_choice = media;
