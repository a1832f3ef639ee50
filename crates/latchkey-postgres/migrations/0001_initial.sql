-- Latchkey's schema on PostgreSQL, kept column for column in step with the SQLite one
-- (crates/latchkey-sqlite/migrations) so that `latchkey migrate` copies rows as they are.
-- Times are BIGINT milliseconds since the Unix epoch (UTC), as on SQLite, so comparisons
-- and GREATEST() are plain integer operations and both engines hold the same values.
--
-- Ids are compared and sorted with COLLATE "C": pagination is keyset on `id` and must
-- follow byte order (as SQLite's BINARY does) whatever the database's locale is.
--
-- sqlx runs this under a PostgreSQL advisory lock, so several instances starting at
-- once against the same database do not race to apply it.

CREATE TABLE sites (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    -- Keys die with their site; Master keys have no site.
    site_id       TEXT COLLATE "C" REFERENCES sites(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT,
    permission    TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin', 'master')),
    -- Space-separated, sorted: scopes are `resource:action` and never contain spaces.
    scopes        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('active', 'blocked')),
    prefix        TEXT NOT NULL,
    -- SHA-256 of the full key; the key itself is never stored. UNIQUE also gives the
    -- index that every verification cache miss looks up.
    hash          BYTEA NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    created_by    TEXT COLLATE "C",
    updated_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    expires_at    BIGINT,
    -- Also makes a key's permission immutable as far as Master goes (site_id never
    -- changes), which the last-Master check relies on.
    CHECK ((permission = 'master') = (site_id IS NULL))
);

-- Listing a site's keys newest first is a backward scan of this index; PostgreSQL does
-- not index foreign keys by itself, and ON DELETE CASCADE from sites needs it too.
CREATE INDEX keys_by_site ON keys (site_id, id);
-- The last-Master check counts these on every change to a Master key.
CREATE INDEX keys_by_permission ON keys (permission, status);

-- No foreign keys: the audit trail outlives the keys and sites it describes.
CREATE TABLE audit_events (
    id             TEXT COLLATE "C" PRIMARY KEY,
    at             BIGINT NOT NULL,
    actor_key_id   TEXT COLLATE "C",
    actor_prefix   TEXT,
    action         TEXT NOT NULL,
    target_key_id  TEXT COLLATE "C",
    site_id        TEXT COLLATE "C",
    source_ip      TEXT,
    -- JSON array of {field, before, after}. TEXT as on SQLite rather than JSONB: it is
    -- never queried into, only written and read back whole.
    changes        TEXT NOT NULL
);

-- Audit listings filtered by site or by key, newest first.
CREATE INDEX audit_by_site ON audit_events (site_id, id);
CREATE INDEX audit_by_key ON audit_events (target_key_id, id);
