-- Revocations (by jti, by subject issued before a time, by key id), kept until the tokens they
-- cover have expired. `id` grows with every insert: instances catch up with `id > last seen`.
CREATE TABLE IF NOT EXISTS revocations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL CHECK (kind IN ('jti', 'sub', 'kid')),
    value          TEXT NOT NULL,
    iss            TEXT,
    issued_before  INTEGER,
    expires_at     INTEGER,
    created_at     INTEGER NOT NULL,
    note           TEXT
);
CREATE INDEX IF NOT EXISTS revocations_expires_at ON revocations (expires_at);
