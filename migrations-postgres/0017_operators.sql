-- An operator is a user who may do what the admin token does (every workspace, the instance),
-- signing in as themselves so the activity log names them.
ALTER TABLE users ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE;
