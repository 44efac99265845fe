//! The coordinator's behaviour: applying specs, reconciling roles and slots, activation by
//! compare-and-set, and advancing role lifecycles from events. Every method reads KV afresh, so
//! any number of replicas can run side by side; the compare-and-sets serialize them.
//!
//! One room per concept, each an `impl Coordinator` block: `sites` (apply, add and remove roles,
//! delete), `reconcile` (roles and slots towards their declaration, the component settings),
//! `slots` (intents, activation, failover, the slot compare-and-set and its projection onto the
//! roles), `events` (other services' events into role lifecycles and synchronization state) and
//! `status`. This file holds the type, the plumbing every room uses, and the pure helpers.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use sup_bus::Cas;
use sup_core::changes::describe_changes;
use sup_core::lifecycle::{self, RoleEvent, RoleState};
use sup_core::model::{Site, SlotKind, SlotTarget, SyncSource};
use sup_core::slots::check_activation;
use sup_core::spec::validate_sites;
use sup_proto::convert::{
    self, role_state_from_proto, role_state_to_proto, site_from_proto, site_to_proto,
};
use sup_proto::prost::Message;
use sup_proto::v1::{self, event::Payload};
use sup_smslog::MilestoneKind;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{ANNOUNCE_WAIT, Announced, Store};
use crate::upstream::Upstream;

/// The service that provisions roles; commands for it go to `sup.cmd.provisioner.<site>`.
pub const PROVISIONER: &str = "provisioner";

mod checks;
mod events;
mod reconcile;
mod sites;
mod slots;
mod status;

const VERIFY_COMPONENTS: &str = MilestoneKind::WsusComponentsHealthy.as_str();
const VERIFY_DATABASE: &str = MilestoneKind::WsusDatabaseOk.as_str();

#[derive(Clone)]
pub struct Coordinator {
    pub store: Store,
    pub metrics: Metrics,
    /// How long an active SUP must be unhealthy before an `auto` site fails over.
    pub failover_after: std::time::Duration,
}

fn now() -> sup_proto::prost_types::Timestamp {
    SystemTime::now().into()
}

fn slot_name(slot: SlotKind) -> &'static str {
    slot.as_str()
}

fn event(
    site: &str,
    server: &str,
    epoch: u64,
    op_id: &str,
    id: String,
    payload: Payload,
) -> v1::Event {
    v1::Event {
        id,
        time: Some(now()),
        site: site.to_string(),
        server: server.to_string(),
        epoch,
        op_id: op_id.to_string(),
        payload: Some(payload),
    }
}

/// What a repeated apply (same op id) answers. A large hierarchy's full answer would not fit in
/// one NATS message (1 MiB by default), so past half of that the stored answer keeps each
/// site's code, whether it changed and how, but not the whole canonical spec.
fn replay_record(resp: &v1::ApplySitesResponse) -> v1::ApplySitesResponse {
    const KEEP_WHOLE: usize = 512 * 1024;
    if resp.encoded_len() <= KEEP_WHOLE {
        return resp.clone();
    }
    v1::ApplySitesResponse {
        results: resp
            .results
            .iter()
            .map(|r| v1::SiteApplied {
                site: r.site.as_ref().map(|s| v1::Site {
                    code: s.code.clone(),
                    ..Default::default()
                }),
                changed: r.changed,
                changes: r.changes.clone(),
            })
            .collect(),
    }
}

/// Whether `new` differs from `old` only in the fields every write stamps.
fn same_apart_from_bookkeeping(old: &v1::RoleStatus, new: &v1::RoleStatus) -> bool {
    let mut n = new.clone();
    n.previous = old.previous;
    n.last_cause = old.last_cause.clone();
    n.updated = old.updated;
    n.unhealthy_since = old.unhealthy_since;
    n.trace_context = old.trace_context.clone();
    n == *old
}

fn verified_both(r: &v1::RoleStatus) -> bool {
    r.verified.iter().any(|v| v == VERIFY_COMPONENTS)
        && r.verified.iter().any(|v| v == VERIFY_DATABASE)
}

fn state_of(r: &v1::RoleStatus) -> RoleState {
    role_state_from_proto(r.state).unwrap_or(RoleState::Declared)
}

/// The model of a stored site. Stored sites were validated before they were written, so this is
/// a conversion; a record that does not convert (an older version's form) is validated as a spec
/// instead, with its parent taken as known so that it can be read on its own.
pub fn model_of(site: &v1::Site) -> Result<Site, ApiError> {
    match sup_proto::convert::site_from_stored(site) {
        Ok(model) => Ok(model),
        Err(e) => {
            tracing::debug!(error = %e, "validating a stored site as a spec");
            validate_stored(site)
        }
    }
}

fn validate_stored(site: &v1::Site) -> Result<Site, ApiError> {
    let mut known = BTreeMap::new();
    let mut raw = site_from_proto(site);
    if !site.parent.is_empty() {
        known.insert(site.parent.clone(), None);
        // Stored by versions that kept a child site's own copy of the settings it inherits
        // (their defaults): the top site's are the ones that count.
        if let Some(su) = raw.software_updates.as_mut() {
            su.schedule = None;
            su.classifications = None;
            su.products = None;
            su.languages = None;
            su.update_file_languages = None;
            su.summary_languages = None;
        }
    }
    let mut sites = validate_sites(&[raw], &known).map_err(ApiError::Invalid)?;
    sites
        .pop()
        .ok_or_else(|| ApiError::BadRequest(format!("site {} did not validate", site.code)))
}

/// A stable digest of component settings (FNV-1a over their encoding), to name a configuration.
fn settings_digest(settings: Option<&v1::SoftwareUpdateSettings>) -> u64 {
    settings
        .map(|s| s.encode_to_vec())
        .unwrap_or_default()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn slot_target(a: &v1::ActiveSlot) -> Option<SlotTarget> {
    (!a.target.is_empty()).then(|| SlotTarget {
        name: a.target.clone(),
        nlb: a.nlb,
        members: a.members.clone(),
    })
}

impl Coordinator {
    pub fn new(store: Store, metrics: Metrics) -> Self {
        Self {
            store,
            metrics,
            failover_after: std::time::Duration::from_secs(30),
        }
    }

    pub(super) async fn publish(&self, e: &v1::Event) -> Result<(), ApiError> {
        self.store.bus.publish_event(e).await?;
        Ok(())
    }

    pub(super) async fn command(&self, cmd: v1::Command) -> Result<(), ApiError> {
        self.store.bus.publish_command(PROVISIONER, &cmd).await?;
        Ok(())
    }

    /// Returns the stored response of an op id already done.
    pub(super) async fn replay<M: Message + Default>(
        &self,
        op_id: &str,
    ) -> Result<Option<M>, ApiError> {
        Ok(match self.store.op_result(op_id).await? {
            Some(b) => M::decode(b).ok(),
            None => None,
        })
    }

    pub(super) async fn remember<M: Message>(&self, op_id: &str, m: &M) -> Result<(), ApiError> {
        self.store
            .record_op(op_id, Bytes::from(m.encode_to_vec()))
            .await?;
        Ok(())
    }

    pub(super) async fn known_sites(&self) -> Result<BTreeMap<String, Option<String>>, ApiError> {
        Ok(self
            .store
            .sites()
            .await?
            .into_iter()
            .map(|s| (s.code.clone(), (!s.parent.is_empty()).then_some(s.parent)))
            .collect())
    }

    // ---- Applying specs ------------------------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[[site]]\ncode = \"CEN\"\n[site.software_updates]\n\
        products = [\"Windows XP\"]\nupdate_file_languages = [\"German\"]\n\
        [[site]]\ncode = \"CH1\"\nparent = \"CEN\"\n";

    fn stored() -> Vec<v1::Site> {
        let sites = sup_core::spec::load_site_file(FILE, &BTreeMap::new()).expect("valid");
        sites
            .iter()
            .map(sup_proto::convert::site_to_proto)
            .collect()
    }

    #[test]
    fn a_stored_site_reads_back_as_it_was_validated() {
        let sites = sup_core::spec::load_site_file(FILE, &BTreeMap::new()).expect("valid");
        for (pb, site) in stored().iter().zip(&sites) {
            assert_eq!(&model_of(pb).expect("reads"), site);
        }
    }

    #[test]
    fn an_older_record_is_read_through_validation() {
        // Older versions kept one language list, and a child's own copy of the top settings.
        let mut top = stored().remove(0);
        let su = top.software_updates.as_mut().expect("settings");
        su.languages = std::mem::take(&mut su.update_file_languages);
        su.summary_languages.clear();
        let model = model_of(&top).expect("validated");
        let languages = &model
            .software_updates
            .top
            .expect("top")
            .update_file_languages;
        assert_eq!(
            languages.iter().map(|e| e.title).collect::<Vec<_>>(),
            ["German"]
        );

        let mut child = stored().remove(1);
        child.software_updates = top.software_updates.clone();
        assert_eq!(model_of(&child).expect("read").software_updates.top, None);
    }
}
