-- Who owns a chat, as the channel identifies them (Zoho Desk's assignee id): kept apart from
-- the owner's name and e-mail, which an admin may set by hand.
ALTER TABLE chats ADD COLUMN responsible_id TEXT;
