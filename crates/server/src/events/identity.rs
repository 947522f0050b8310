//! The back's own identity: a `backUuid` and an X25519 key pair, created on first start in the
//! data directory's store and the same after every restart, so fronts keep trusting it.

use protocol::{BackUuid, KeyPair, SecretKey};
use rusqlite::params;

use crate::db::Db;

/// Who this backend is to the fronts.
#[derive(Debug, Clone)]
pub(crate) struct BackIdentity {
    pub(crate) uuid: BackUuid,
    pub(crate) keys: KeyPair,
}

impl BackIdentity {
    /// Loads the identity, creating it on first start.
    pub(crate) fn load_or_create(db: &Db) -> rusqlite::Result<Self> {
        let fresh = KeyPair::generate();
        let (uuid, secret) = db.with(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS ev_identity (
                     id          INTEGER PRIMARY KEY CHECK (id = 1),
                     back_uuid   TEXT NOT NULL,
                     secret_key  BLOB NOT NULL
                 );",
            )?;
            // INSERT OR IGNORE, then read: whoever wrote first wins, and everyone reads it.
            conn.execute(
                "INSERT OR IGNORE INTO ev_identity (id, back_uuid, secret_key) VALUES (1, ?1, ?2)",
                params![BackUuid::new_v4().to_string(), fresh.secret.to_bytes().as_slice()],
            )?;
            conn.query_row("SELECT back_uuid, secret_key FROM ev_identity WHERE id = 1", [], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
        })?;
        let corrupt = |column: &str| {
            rusqlite::Error::InvalidColumnType(0, column.to_owned(), rusqlite::types::Type::Blob)
        };
        let uuid: BackUuid = uuid.parse().map_err(|_| corrupt("back_uuid"))?;
        let secret = <[u8; 32]>::try_from(secret.as_slice()).map_err(|_| corrupt("secret_key"))?;
        Ok(Self { uuid, keys: KeyPair::from_secret(SecretKey::from_bytes(secret)) })
    }
}
