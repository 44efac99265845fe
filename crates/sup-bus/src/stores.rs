//! The project's buckets as [`crate::Bus`] hands them out, and the reads that walk the
//! membership indexes (applied sites, each site's role records) instead of listing keys.

use bytes::Bytes;

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
        let servers = self
            .sites()
            .index_members(&subjects::roles_index(site))
            .await?;
        let records = self
            .roles()
            .get_many(
                servers
                    .iter()
                    .map(|s| subjects::role_key(site, s))
                    .collect(),
            )
            .await?;
        Ok(records.into_iter().flatten().collect())
    }
}
