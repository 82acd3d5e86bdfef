-- How long a workspace keeps its messages (NULL: for good).
ALTER TABLE workspaces ADD COLUMN message_retention_ms BIGINT;
