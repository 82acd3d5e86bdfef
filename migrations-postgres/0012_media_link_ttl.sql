-- How long a workspace's media links (download_url) work after their payload is made.
ALTER TABLE workspaces ADD COLUMN media_link_ttl_ms BIGINT NOT NULL DEFAULT 86400000;
