//! Typed access to the coordinator's state in NATS KV: site specs, role records, active slots
//! (whose revision is the epoch) and op-id results. Nothing is cached: every decision reads the
//! bucket, and every write that matters is a compare-and-set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sup_bus::{Bucket, Bus, BusError, Cas, subjects};

use sup_proto::prost::Message;
use sup_proto::v1;

/// How many times a read-modify-write is retried when another writer got there first.
const CAS_ATTEMPTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("stored value at {key} is not a valid {what}: {source}")]
    Corrupt {
        key: String,
        what: &'static str,
        #[source]
        source: sup_proto::prost::DecodeError,
    },
    #[error("listing {bucket}: {message}")]
    List {
        bucket: &'static str,
        message: String,
    },
    #[error(
        "{key} kept changing under concurrent writers; giving up after {CAS_ATTEMPTS} attempts"
    )]
    Contended { key: String },
    #[error(
        "{key} is at revision {revision} and the event history is more than {behind} role \
         changes behind; retry"
    )]
    Unannounced {
        key: String,
        revision: u64,
        behind: u64,
    },
}

/// The two buckets whose changes are announced as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    Active,
    Roles,
}

impl Announced {
    pub fn as_str(self) -> &'static str {
        match self {
            Announced::Active => "active",
            Announced::Roles => "roles",
        }
    }

    /// How many bucket revisions a write may be ahead of the announcements: half of what the
    /// bucket keeps per key, so an unannounced change is never pushed out of the history (a
    /// key's own revisions are a subset of the bucket's).
    pub fn unannounced_max(self) -> u64 {
        let history = match self {
            Announced::Active => sup_bus::ACTIVE_HISTORY,
            Announced::Roles => sup_bus::ROLES_HISTORY,
        };
        history as u64 / 2
    }
}

/// How long a write waits for the announcements to come within its bound.
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Store {
    pub bus: Bus,
    /// The revision of each announced bucket up to which this process's announcer has put every
    /// change in the event history: known without asking the store, so a write does not wait on
    /// the election of the stream that holds the shared marker.
    progress: Arc<[AtomicU64; 2]>,
}

/// A role record change: the record before, after, and the new revision.
pub struct RoleChange {
    pub before: Option<v1::RoleStatus>,
    pub after: v1::RoleStatus,
    pub revision: u64,
}

fn decode<M: Message + Default>(
    key: &str,
    what: &'static str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        what,
        source,
    })
}

impl Store {
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            progress: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        }
    }

    /// Records that this process's announcer has announced `which` up to `revision`.
    pub fn announced_to(&self, which: Announced, revision: u64) {
        self.progress[which as usize].fetch_max(revision, Ordering::AcqRel);
    }

    /// Whether the announcements of `which` reach `revision` within `wait`: this process's own
    /// announcer first, then the shared marker as the stream leader has it.
    pub async fn announced(&self, which: Announced, revision: u64, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.progress[which as usize].load(Ordering::Acquire) >= revision {
                return true;
            }
            if let Ok(m) = self.marker_from_leader(which).await
                && m >= revision
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get<M: Message + Default>(
        &self,
        kv: &Bucket,
        key: &str,
        what: &'static str,
    ) -> Result<Option<(M, u64)>, StoreError> {
        match kv.get(key).await? {
            Some((bytes, rev)) => Ok(Some((decode(key, what, &bytes)?, rev))),
            None => Ok(None),
        }
    }

    pub async fn site(&self, code: &str) -> Result<Option<(v1::Site, u64)>, StoreError> {
        Ok(self.bus.applied_site(code).await?)
    }

    /// Every applied site, sorted by code.
    pub async fn sites(&self) -> Result<Vec<v1::Site>, StoreError> {
        let mut out = Vec::new();
        for (code, bytes) in self.bus.all_sites().await? {
            out.push(decode(&code, "site", &bytes)?);
        }
        Ok(out)
    }

    /// Stores a site's spec without counting it among the applied sites (see
    /// [`Self::index_sites`]).
    pub async fn put_site_spec(&self, site: &v1::Site) -> Result<u64, StoreError> {
        Ok(self.bus.put_site_spec(site).await?)
    }

    /// Counts sites among the applied ones, once their specs are stored.
    pub async fn index_sites(&self, codes: &[&str]) -> Result<(), StoreError> {
        Ok(self.bus.index_applied_sites(codes).await?)
    }

    pub async fn delete_site(&self, code: &str) -> Result<(), StoreError> {
        Ok(self.bus.delete_applied_site(code).await?)
    }

    /// What the spec or the operator last asked of a slot (stamped with the epoch it was
    /// asked at); `None` when nothing was, or the record is unreadable.
    pub async fn intent(
        &self,
        site: &str,
        slot: &str,
    ) -> Result<Option<v1::ActiveSlot>, StoreError> {
        let key = subjects::want_key(site, slot);
        Ok(self
            .bus
            .sites()
            .get(&key)
            .await?
            .and_then(|(b, _)| v1::ActiveSlot::decode(b).ok()))
    }

    pub async fn put_intent(
        &self,
        site: &str,
        slot: &str,
        intent: &v1::ActiveSlot,
    ) -> Result<(), StoreError> {
        let key = subjects::want_key(site, slot);
        self.bus
            .sites()
            .put(&key, intent.encode_to_vec().into())
            .await?;
        Ok(())
    }

    /// The provisioner's last drift report of a site (a report with no fields when none).
    pub async fn drift(&self, site: &str) -> Result<Option<v1::DriftDetected>, StoreError> {
        Ok(self.bus.drift_report(site).await?)
    }

    pub async fn sync_status(&self, code: &str) -> Result<Option<v1::SyncStatus>, StoreError> {
        let key = subjects::sync_key(code);
        Ok(self
            .get(self.bus.sites(), &key, "sync status")
            .await?
            .map(|(s, _)| s))
    }

    /// Read-modify-write of a site's sync status.
    pub async fn update_sync_status(
        &self,
        code: &str,
        f: impl Fn(v1::SyncStatus) -> v1::SyncStatus,
    ) -> Result<(), StoreError> {
        let key = subjects::sync_key(code);
        let kv = self.bus.sites();
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get::<v1::SyncStatus>(kv, &key, "sync status").await?;
            let (value, rev) = match current {
                Some((s, rev)) => (f(s), Some(rev)),
                None => (f(v1::SyncStatus::default()), None),
            };
            let bytes: Bytes = value.encode_to_vec().into();
            let done = match rev {
                Some(rev) => kv.update(&key, bytes, rev).await?,
                None => kv.create(&key, bytes).await?,
            };
            if let Cas::Won(_) = done {
                return Ok(());
            }
        }
        Err(StoreError::Contended { key })
    }

    pub async fn role(
        &self,
        site: &str,
        server: &str,
    ) -> Result<Option<(v1::RoleStatus, u64)>, StoreError> {
        self.get(self.bus.roles(), &subjects::role_key(site, server), "role")
            .await
    }

    /// Every role record of a site, sorted by server.
    pub async fn roles(&self, site: &str) -> Result<Vec<v1::RoleStatus>, StoreError> {
        let mut out: Vec<v1::RoleStatus> = Vec::new();
        for bytes in self.bus.site_roles(site).await? {
            out.push(decode(site, "role", &bytes)?);
        }
        out.sort_by(|a, b| a.server.cmp(&b.server));
        Ok(out)
    }

    /// Compare-and-set loop on a role record. `f` sees the current record (or `None`) and returns
    /// the new one, or `None` to leave it alone. Returns the change when one was written.
    pub async fn update_role(
        &self,
        site: &str,
        server: &str,
        mut f: impl FnMut(Option<&v1::RoleStatus>) -> Option<v1::RoleStatus>,
    ) -> Result<Option<RoleChange>, StoreError> {
        let key = subjects::role_key(site, server);
        let kv = self.bus.roles();
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get::<v1::RoleStatus>(kv, &key, "role").await?;
            let before = current.as_ref().map(|(r, _)| r.clone());
            let Some(after) = f(before.as_ref()) else {
                return Ok(None);
            };
            // Like a slot, a role record runs at most half its history ahead of the
            // announcements, so no change of it leaves the history before it is an event.
            let behind = Announced::Roles.unannounced_max();
            if let Some((_, revision)) = &current
                && !self
                    .announced(
                        Announced::Roles,
                        revision.saturating_sub(behind),
                        ANNOUNCE_WAIT,
                    )
                    .await
            {
                return Err(StoreError::Unannounced {
                    key,
                    revision: *revision,
                    behind,
                });
            }
            let bytes: Bytes = after.encode_to_vec().into();
            let cas = match &current {
                Some((_, rev)) => kv.update(&key, bytes, *rev).await?,
                None => {
                    // Indexed before it exists, so a reader never misses a record.
                    self.bus
                        .sites()
                        .index_update(&subjects::roles_index(site), server, true)
                        .await?;
                    kv.create(&key, bytes).await?
                }
            };
            if let Cas::Won(revision) = cas {
                return Ok(Some(RoleChange {
                    before,
                    after,
                    revision,
                }));
            }
        }
        Err(StoreError::Contended { key })
    }

    pub async fn delete_role(&self, site: &str, server: &str) -> Result<(), StoreError> {
        Ok(self
            .bus
            .roles()
            .delete(&subjects::role_key(site, server))
            .await?)
    }

    /// The slot record and its revision (the epoch). A cleared slot has an empty target.
    pub async fn slot(
        &self,
        site: &str,
        slot: &str,
    ) -> Result<Option<(v1::ActiveSlot, u64)>, StoreError> {
        self.get(
            self.bus.active(),
            &subjects::active_key(site, slot),
            "active slot",
        )
        .await
    }

    /// The slot as its stream's leader has it: the base of a decision (a follower's copy may be
    /// behind or, just after a restart, hold a write the cluster never committed).
    pub async fn slot_from_leader(
        &self,
        site: &str,
        slot: &str,
    ) -> Result<Option<(v1::ActiveSlot, u64)>, StoreError> {
        let key = subjects::active_key(site, slot);
        match self.bus.active().get_from_leader(&key).await? {
            Some((bytes, rev)) => Ok(Some((decode(&key, "active slot", &bytes)?, rev))),
            None => Ok(None),
        }
    }

    /// Writes the slot only if it is still at `expected` (or absent when `None`).
    pub async fn cas_slot(
        &self,
        site: &str,
        slot: &str,
        value: &v1::ActiveSlot,
        expected: Option<u64>,
    ) -> Result<Cas, StoreError> {
        let key = subjects::active_key(site, slot);
        let kv = self.bus.active();
        let bytes: Bytes = value.encode_to_vec().into();
        Ok(match expected {
            Some(rev) => kv.update(&key, bytes, rev).await?,
            None => kv.create(&key, bytes).await?,
        })
    }

    /// The stored response of an op id already done.
    pub async fn op_result(&self, op_id: &str) -> Result<Option<Bytes>, StoreError> {
        if op_id.is_empty() {
            return Ok(None);
        }
        Ok(self
            .bus
            .ops()
            .get(&subjects::op_key(op_id))
            .await?
            .map(|(b, _)| b))
    }

    pub async fn record_op(&self, op_id: &str, result: Bytes) -> Result<(), StoreError> {
        if op_id.is_empty() {
            return Ok(());
        }
        // A concurrent duplicate may have recorded first; its result stands.
        self.bus
            .ops()
            .create(&subjects::op_key(op_id), result)
            .await?;
        Ok(())
    }

    /// A bucket revision up to which changes are known to be announced as events, as the
    /// stream's leader has it: what an answer to a client or a new watch may rest on.
    pub async fn marker_from_leader(&self, which: Announced) -> Result<u64, StoreError> {
        let key = subjects::announced_key(which.as_str());
        Ok(self
            .bus
            .ops()
            .get_from_leader(&key)
            .await?
            .and_then(|(b, _)| std::str::from_utf8(&b).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Moves a marker forward (never back: a slower replica's older value is ignored).
    pub async fn advance_marker(&self, which: Announced, revision: u64) -> Result<(), StoreError> {
        let key = subjects::announced_key(which.as_str());
        let kv = self.bus.ops();
        for _ in 0..CAS_ATTEMPTS {
            let current = kv.get(&key).await?;
            let (value, rev) = match &current {
                Some((b, rev)) => (
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0),
                    Some(*rev),
                ),
                None => (0, None),
            };
            if value >= revision {
                return Ok(());
            }
            let bytes: Bytes = revision.to_string().into();
            let cas = match rev {
                Some(r) => kv.update(&key, bytes, r).await?,
                None => kv.create(&key, bytes).await?,
            };
            if let Cas::Won(_) = cas {
                return Ok(());
            }
        }
        Err(StoreError::Contended { key })
    }
}
