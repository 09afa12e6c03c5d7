-- Revocations (by jti, by subject issued before a time, by key id), kept until the tokens they
-- cover have expired. Inserts take an advisory transaction lock, so ids become visible in
-- order and instances can catch up with `id > last seen` without missing one.
CREATE TABLE IF NOT EXISTS revocations (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('jti', 'sub', 'kid')),
    value          TEXT NOT NULL,
    iss            TEXT,
    issued_before  BIGINT,
    expires_at     BIGINT,
    created_at     BIGINT NOT NULL,
    note           TEXT
);
CREATE INDEX IF NOT EXISTS revocations_expires_at ON revocations (expires_at);
