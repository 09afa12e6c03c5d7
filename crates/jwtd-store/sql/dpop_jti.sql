-- DPoP proof `jti`s recorded by every instance sharing this store ([issuer.dpop] replay_store =
-- "shared"): `hash` is the first 16 bytes of SHA-256(jkt || 0x00 || jti) (jwtd_core::replay_key),
-- `expires_at` (Unix seconds) the end of the proof's replay window. A row still live is a
-- replay on every instance; expired rows are deleted in batches by each instance's purge task.
CREATE TABLE IF NOT EXISTS dpop_jti (
    hash        BYTEA PRIMARY KEY CHECK (octet_length(hash) = 16),
    expires_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dpop_jti_expires_at ON dpop_jti (expires_at);
