-- The issuer's key ring, shared by every instance (same columns as the SQLite store).
CREATE TABLE IF NOT EXISTS keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    alg           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    created_at    BIGINT NOT NULL,
    activate_at   BIGINT,
    retire_after  BIGINT,
    public_jwk    TEXT NOT NULL,
    nonce         BYTEA NOT NULL,
    sealed        BYTEA NOT NULL
);
