-- What customers and channels say beyond a message's words: the id of the button or list row a
-- customer's answer came from (its title is the message's text), when a channel last edited a
-- message (Chatwoot's message_updated), and whether the channel itself says the chat can be
-- answered now (Chatwoot's can_reply), which then stands for chatbundle's own reckoning.
ALTER TABLE messages ADD COLUMN reply_to_button TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE chats ADD COLUMN channel_can_reply BOOLEAN; -- NULL: the channel never said
