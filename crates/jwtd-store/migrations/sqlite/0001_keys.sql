-- The issuer's key ring. Private keys are sealed with AES-256-GCM under the key encryption key,
-- with "jwtd/key/v1|<kid>|<alg>" as associated data: a row moved to another kid or altered in
-- any way fails to open.
CREATE TABLE IF NOT EXISTS keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    alg           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    created_at    INTEGER NOT NULL,
    activate_at   INTEGER,
    retire_after  INTEGER,
    public_jwk    TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    sealed        BLOB NOT NULL
);
