-- Dashboard sessions: the same table as on SQLite (see its 0004_sessions.sql for why each
-- column is there); any instance on this database serves any session.
CREATE TABLE dashboard_sessions (
    id_hash BYTEA PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    key_hash BYTEA NOT NULL, key_prefix TEXT NOT NULL, csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL,
    state TEXT NOT NULL, version BIGINT NOT NULL
);

CREATE INDEX dashboard_sessions_by_last_seen ON dashboard_sessions (last_seen_at);
