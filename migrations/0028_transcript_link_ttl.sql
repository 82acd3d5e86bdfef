-- How long a chat's transcript link works (NULL: for good), counted from when the link was made
-- or last rotated (NULL: when the chat was first seen).
ALTER TABLE workspaces ADD COLUMN transcript_link_ttl_ms INTEGER;
ALTER TABLE chats ADD COLUMN token_issued_at INTEGER;
