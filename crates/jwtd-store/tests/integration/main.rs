//! jwtd-store's integration tests in one test binary: the key ring on the embedded SQLite
//! store (`ring`) and on the machine's PostgreSQL (`postgres`).

mod postgres;
mod ring;
