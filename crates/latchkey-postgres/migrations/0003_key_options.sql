-- Optional per-key settings. Most live in one JSON object (`options`: metadata, IP
-- allowlist, rate limit, rotation links) because SQL never looks inside them; the ones
-- SQL must filter on or update atomically get columns of their own.
ALTER TABLE keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
-- `GET /keys?owner_id=` lists one owner's keys.
ALTER TABLE keys ADD COLUMN owner_id TEXT;
-- Usage credits are spent by a conditional update on every verification of such a key.
ALTER TABLE keys ADD COLUMN credits_remaining BIGINT;
ALTER TABLE keys ADD COLUMN credits_refill_interval TEXT;
ALTER TABLE keys ADD COLUMN credits_refill_amount BIGINT;
ALTER TABLE keys ADD COLUMN credits_refilled_at BIGINT;
CREATE INDEX keys_by_owner ON keys (owner_id, id);
