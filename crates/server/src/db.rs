//! The embedded SQL store: one SQLite database in the data directory, shared by the services.
//!
//! Each service creates its own tables (`CREATE TABLE IF NOT EXISTS`) when it starts. Queries
//! are short, so they run under a `std::sync::Mutex` on the calling task rather than on a
//! blocking thread pool: the lock is never held across an `.await`.
//!
//! WAL checkpoints, which fsync the database file (milliseconds on a VM disk), run on a
//! background thread with a connection of their own, so they never hold that lock: SQLite's
//! automatic checkpoint would run inside some request's commit and stall every other request.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (or creates) `path` in WAL mode, with a checkpoint thread that lives as long as
    /// the handle.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Self::init(Connection::open(path)?)?;
        spawn_checkpointer(path, &db)?;
        Ok(db)
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

/// How often the checkpoint thread moves committed pages from the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Turns SQLite's automatic checkpoint off on `db` and checkpoints every [`CHECKPOINT_EVERY`]
/// on a second connection until every handle of `db` is dropped. If no thread can be started,
/// the automatic checkpoint stays on.
fn spawn_checkpointer(path: &Path, db: &Db) -> rusqlite::Result<()> {
    let owner: Weak<Mutex<Connection>> = Arc::downgrade(&db.conn);
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let spawned =
        std::thread::Builder::new().name("sqlite-checkpoint".to_owned()).spawn(move || {
            while owner.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                // PASSIVE: copies what it can without waiting for the writer, which goes on
                // appending to the WAL meanwhile.
                if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %err, "WAL checkpoint failed");
                }
            }
        });
    if spawned.is_ok() {
        db.with(|c| c.pragma_update(None, "wal_autocheckpoint", 0))?;
    }
    Ok(())
}
