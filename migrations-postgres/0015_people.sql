-- People: a user is an e-mail address (kept lower-case) with a password (argon2id; NULL until an
-- invitation is accepted), a member of workspaces as an admin or a viewer. An invitation is a
-- single-use link (only its SHA-256 is kept) that lets its user choose a password.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    password_hash   TEXT,
    created_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT
);
CREATE TABLE memberships (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);
CREATE INDEX memberships_by_workspace ON memberships (workspace_id, created_at);
CREATE TABLE invitations (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
-- A web session belongs to a user, or (NULL) to whoever signed in with the admin token.
ALTER TABLE web_sessions ADD COLUMN user_id TEXT REFERENCES users (id) ON DELETE CASCADE;
