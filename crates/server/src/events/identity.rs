//! The back's own identity: a `backUuid` and an X25519 key pair, created once in the event
//! store (by whichever instance starts first) and the same after every restart and on every
//! instance of a cluster, so fronts keep trusting it wherever their requests land.

use protocol::{BackUuid, KeyPair, SecretKey};

use super::store::{BackRecord, EventStore, StoreError};

/// Who this backend is to the fronts.
#[derive(Debug, Clone)]
pub(crate) struct BackIdentity {
    pub(crate) uuid: BackUuid,
    pub(crate) keys: KeyPair,
}

impl BackIdentity {
    /// Loads the identity, creating it on first start.
    pub(crate) async fn load_or_create(store: &dyn EventStore) -> Result<Self, StoreError> {
        let fresh = KeyPair::generate();
        let fresh = BackRecord { uuid: BackUuid::new_v4(), secret: fresh.secret.to_bytes() };
        let kept = store.back_identity(fresh).await?;
        Ok(Self { uuid: kept.uuid, keys: KeyPair::from_secret(SecretKey::from_bytes(kept.secret)) })
    }
}
