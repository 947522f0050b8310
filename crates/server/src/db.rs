//! The embedded SQL store: one SQLite database in the data directory, shared by the services.
//!
//! Each service creates its own tables (`CREATE TABLE IF NOT EXISTS`) when it starts. Queries
//! are short, so they run under a `std::sync::Mutex` on the calling task rather than on a
//! blocking thread pool: the lock is never held across an `.await`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (or creates) `path` in WAL mode.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database, for tests and benchmarks.
    pub fn in_memory() -> rusqlite::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> rusqlite::Result<Self> {
        // WAL with synchronous=NORMAL: commits survive a process crash; only an OS crash may
        // lose the last transactions, which is the trade every embedded session store makes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection. Keep `f` short; never `.await` inside it.
    pub fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is still safe to use.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}
