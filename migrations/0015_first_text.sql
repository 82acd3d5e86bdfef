-- A chat's first message with words: the first one a webhook that skips media sees, which is
-- its new chat. Every message stored before media were kept had words.
ALTER TABLE chats ADD COLUMN first_text_seq INTEGER;
UPDATE chats SET first_text_seq = first_message_seq;
