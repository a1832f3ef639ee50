-- Dashboard sessions, so they survive a restart (and, on PostgreSQL, any instance serves
-- them). `id_hash` is the SHA-256 of the cookie's session id: the table never holds a
-- usable session id. `state` is the dashboard's own JSON (a message for the next page,
-- single-use forms), changed by compare-and-set on `version`.
CREATE TABLE dashboard_sessions (
    id_hash       BLOB PRIMARY KEY,
    key_hash      BLOB NOT NULL,
    key_prefix    TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    version       INTEGER NOT NULL
);

-- Pruning finds idle sessions by their last request.
CREATE INDEX dashboard_sessions_by_last_seen ON dashboard_sessions (last_seen_at);
