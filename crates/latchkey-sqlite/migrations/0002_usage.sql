-- Requests per key and UTC day, allowed vs refused, for the dashboard's usage charts.
-- Counted in memory and added here in batches (never a write per request). Rows go
-- with their key.
CREATE TABLE key_usage (
    key_id   TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
    -- Days since 1970-01-01, UTC.
    day      INTEGER NOT NULL,
    allowed  INTEGER NOT NULL DEFAULT 0,
    refused  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
