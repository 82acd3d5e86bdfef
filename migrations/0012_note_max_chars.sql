-- Where a webhook's bundles are cut into parts: characters of note per part (HubSpot takes 65,536,
-- Salesforce note bodies 32,000).
ALTER TABLE webhooks ADD COLUMN note_max_chars INTEGER NOT NULL DEFAULT 60000;
