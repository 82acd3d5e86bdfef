-- The language chatbundle writes a workspace's notes in: en or ja.
ALTER TABLE workspaces ADD COLUMN locale TEXT NOT NULL DEFAULT 'en';
