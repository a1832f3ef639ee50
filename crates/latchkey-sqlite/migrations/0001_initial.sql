-- Latchkey's schema on SQLite. Times are INTEGER milliseconds since the Unix epoch (UTC),
-- so comparisons and MAX() are plain integer operations on both engines.

CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE keys (
    id            TEXT PRIMARY KEY,
    -- Keys die with their site; Master keys have no site.
    site_id       TEXT REFERENCES sites(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT,
    permission    TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin', 'master')),
    -- Space-separated, sorted: scopes are `resource:action` and never contain spaces.
    scopes        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('active', 'blocked')),
    prefix        TEXT NOT NULL,
    -- SHA-256 of the full key; the key itself is never stored.
    hash          BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    created_by    TEXT,
    updated_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    expires_at    INTEGER,
    CHECK ((permission = 'master') = (site_id IS NULL))
);

CREATE INDEX keys_by_site ON keys (site_id, id);
-- The last-Master check counts these on every change to a Master key.
CREATE INDEX keys_by_permission ON keys (permission, status);

-- No foreign keys: the audit trail outlives the keys and sites it describes.
CREATE TABLE audit_events (
    id             TEXT PRIMARY KEY,
    at             INTEGER NOT NULL,
    actor_key_id   TEXT,
    actor_prefix   TEXT,
    action         TEXT NOT NULL,
    target_key_id  TEXT,
    site_id        TEXT,
    source_ip      TEXT,
    -- JSON array of {field, before, after}.
    changes        TEXT NOT NULL
);

CREATE INDEX audit_by_site ON audit_events (site_id, id);
CREATE INDEX audit_by_key ON audit_events (target_key_id, id);
