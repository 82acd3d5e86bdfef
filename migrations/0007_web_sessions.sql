-- Signed-in sessions of the web page, kept server-side so that signing out ends one for good
-- (a copied cookie stops working) and expired ones can be swept.
CREATE TABLE web_sessions (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
