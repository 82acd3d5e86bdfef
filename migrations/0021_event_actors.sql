-- Who did what: an event a person or an integration caused names them (`operator`,
-- `token:<name>`, later a member's e-mail); the daemon's own events name nobody.
ALTER TABLE events ADD COLUMN actor TEXT;
