-- Events and their webhook deliveries (the outbox). An event is written in the same
-- transaction as the change and its audit record, with one delivery per endpoint that
-- wants it; the delivery worker sends them, oldest first per endpoint.

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,
    -- NULL: every site's events (a Master's endpoint). Endpoints go with their site.
    site_id                     TEXT REFERENCES sites(id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    description                 TEXT,
    -- Space-separated event types; '' means all.
    events                      TEXT NOT NULL DEFAULT '',
    -- `whsec_<base64>`, kept as it is: signing needs it.
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  INTEGER,
    failing_since               INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
);

CREATE INDEX webhook_endpoints_by_site ON webhook_endpoints (site_id, id);

-- No foreign keys: events outlive the keys and sites they describe. `seq` orders the
-- outbox (the `after` cursor of GET /events); AUTOINCREMENT never reuses a pruned one.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    type      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    site_id   TEXT,
    key_id    TEXT,
    -- JSON of the body's `data`: the key as the API shows it, never its value or hash.
    data      TEXT NOT NULL,
    -- Set for a test event: it goes to that endpoint only and is not in GET /events.
    only_to   TEXT
);

CREATE INDEX events_by_site ON events (site_id, seq);

-- Pending deliveries only: a delivered one is deleted (its attempts stay below).
CREATE TABLE webhook_deliveries (
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_seq        INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    -- Until when a worker holds it; a claim that runs out (a dead instance) is taken over.
    claimed_until    INTEGER,
    PRIMARY KEY (endpoint_id, event_seq)
);

CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_seq);

CREATE TABLE webhook_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id    TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    status_code    INTEGER,
    error          TEXT,
    duration_ms    INTEGER NOT NULL,
    next_retry_at  INTEGER
);

CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);
-- The reminders look for keys about to expire.
CREATE INDEX keys_by_expiry ON keys (expires_at) WHERE expires_at IS NOT NULL;
