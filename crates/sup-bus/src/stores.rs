//! The project's buckets as [`crate::Bus`] hands them out, the reads that walk the membership
//! indexes (applied sites, each site's role records) instead of listing keys, and the typed
//! records the services share.

use bytes::Bytes;
use sup_proto::prost::Message;
use sup_proto::v1;

use crate::{Bucket, Bus, BusError, subjects};

impl Bus {
    /// `sup_sites`: site specs, and per site its sync status, schedule, run in progress, slot
    /// wishes, drift report and membership index.
    pub fn sites(&self) -> &Bucket {
        &self.buckets.sites
    }

    /// `sup_roles`: the SUP role record of each server of each site.
    pub fn roles(&self) -> &Bucket {
        &self.buckets.roles
    }

    /// `sup_active`: each site's active slots; a slot's revision is its epoch.
    pub fn active(&self) -> &Bucket {
        &self.buckets.active
    }

    /// `sup_ops`: results of mutating requests and commands by id, and announcement markers.
    pub fn ops(&self) -> &Bucket {
        &self.buckets.ops
    }

    /// `sup_positions`: where the log watcher has read each log file to.
    pub fn positions(&self) -> &Bucket {
        &self.buckets.positions
    }

    /// `sup_health`: the latest health report of each SUP server.
    pub fn health(&self) -> &Bucket {
        &self.buckets.health
    }

    /// `sup_members`: heartbeats of the replicas that share a service's work.
    pub fn members(&self) -> &Bucket {
        &self.buckets.members
    }

    /// Every applied site's stored spec, by code.
    pub async fn all_sites(&self) -> Result<Vec<(String, Bytes)>, BusError> {
        let sites = self.sites();
        let codes = sites.index_members(subjects::SITES_INDEX).await?;
        let records = sites
            .get_many(codes.iter().map(|c| subjects::site_key(c)).collect())
            .await?;
        Ok(codes
            .into_iter()
            .zip(records)
            .filter_map(|(code, r)| Some((code, r?)))
            .collect())
    }

    /// Every role record of a site.
    pub async fn site_roles(&self, site: &str) -> Result<Vec<Bytes>, BusError> {
        Ok(self
            .site_roles_by_key(site)
            .await?
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect())
    }

    /// Every role record of a site with the key it is stored under.
    async fn site_roles_by_key(&self, site: &str) -> Result<Vec<(String, Bytes)>, BusError> {
        let keys: Vec<String> = self
            .sites()
            .index_members(&subjects::roles_index(site))
            .await?
            .iter()
            .map(|s| subjects::role_key(site, s))
            .collect();
        let records = self.roles().get_many(keys.clone()).await?;
        Ok(keys
            .into_iter()
            .zip(records)
            .filter_map(|(key, r)| Some((key, r?)))
            .collect())
    }
}

/// Typed reads of the records several services share. A record that does not decode is left
/// out and logged: one bad record must not hide every other site or role.
impl Bus {
    /// Every applied site's spec, in code order.
    pub async fn applied_sites(&self) -> Result<Vec<v1::Site>, BusError> {
        Ok(self
            .all_sites()
            .await?
            .into_iter()
            .filter_map(|(code, bytes)| decoded(&subjects::site_key(&code), &bytes))
            .collect())
    }

    /// One applied site's spec and its revision. Asked for by name, a record that does not
    /// decode is an error, not left out.
    pub async fn applied_site(&self, code: &str) -> Result<Option<(v1::Site, u64)>, BusError> {
        let key = subjects::site_key(code);
        match self.sites().get(&key).await? {
            None => Ok(None),
            Some((bytes, revision)) => v1::Site::decode(bytes)
                .map(|site| Some((site, revision)))
                .map_err(|source| BusError::Decode {
                    subject: key,
                    source,
                }),
        }
    }

    /// Stores a site's spec and counts it among the applied sites; returns its revision.
    pub async fn put_applied_site(&self, site: &v1::Site) -> Result<u64, BusError> {
        let revision = self.put_site_spec(site).await?;
        self.sites()
            .index_update(subjects::SITES_INDEX, &site.code, true)
            .await?;
        Ok(revision)
    }

    /// Stores a site's spec only: it counts among the applied sites once
    /// [`Bus::index_applied_sites`] names it. Returns its revision.
    pub async fn put_site_spec(&self, site: &v1::Site) -> Result<u64, BusError> {
        self.sites()
            .put(&subjects::site_key(&site.code), site.encode_to_vec().into())
            .await
    }

    /// Counts many sites among the applied sites at once, in one compare-and-set loop: the
    /// sites of one apply stored concurrently would otherwise contend for the index key.
    pub async fn index_applied_sites(&self, codes: &[&str]) -> Result<(), BusError> {
        self.sites()
            .index_update_many(subjects::SITES_INDEX, codes, true)
            .await
    }

    /// Takes a site out of the applied sites, then removes its spec.
    pub async fn delete_applied_site(&self, code: &str) -> Result<(), BusError> {
        let sites = self.sites();
        sites
            .index_update(subjects::SITES_INDEX, code, false)
            .await?;
        sites.delete(&subjects::site_key(code)).await
    }

    /// The provisioner's last drift report of a site; an undecodable one reads as none.
    pub async fn drift_report(&self, site: &str) -> Result<Option<v1::DriftDetected>, BusError> {
        let key = subjects::drift_key(site);
        Ok(self
            .sites()
            .get(&key)
            .await?
            .and_then(|(bytes, _)| decoded(&key, &bytes)))
    }

    /// Records a site's drift report.
    pub async fn put_drift_report(
        &self,
        site: &str,
        report: &v1::DriftDetected,
    ) -> Result<u64, BusError> {
        self.sites()
            .put(&subjects::drift_key(site), report.encode_to_vec().into())
            .await
    }

    /// Every role record of a site.
    pub async fn role_records(&self, site: &str) -> Result<Vec<v1::RoleStatus>, BusError> {
        Ok(self
            .site_roles_by_key(site)
            .await?
            .into_iter()
            .filter_map(|(key, bytes)| decoded(&key, &bytes))
            .collect())
    }

    /// A site's slot (`intranet` or `internet`) and its revision, the epoch; through the stream's
    /// leader when a decision rests on it. An undecodable record reads as an empty slot.
    pub async fn slot(
        &self,
        site: &str,
        slot: &str,
        from_leader: bool,
    ) -> Result<Option<(v1::ActiveSlot, u64)>, BusError> {
        let key = subjects::active_key(site, slot);
        let record = if from_leader {
            self.active().get_from_leader(&key).await?
        } else {
            self.active().get(&key).await?
        };
        Ok(record.map(|(bytes, revision)| (decoded(&key, &bytes).unwrap_or_default(), revision)))
    }

    /// A server's latest health report and its revision.
    pub async fn health_report(
        &self,
        site: &str,
        server: &str,
    ) -> Result<Option<(v1::HealthReport, u64)>, BusError> {
        let key = subjects::health_key(site, server);
        Ok(self
            .health()
            .get(&key)
            .await?
            .and_then(|(bytes, revision)| Some((decoded(&key, &bytes)?, revision))))
    }
}

fn decoded<M: Message + Default>(key: &str, bytes: &[u8]) -> Option<M> {
    match M::decode(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(key, error = %e, "an undecodable record is left out");
            None
        }
    }
}
