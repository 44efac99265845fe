//! The coordinator's behaviour: applying specs, reconciling roles and slots, activation by
//! compare-and-set, and advancing role lifecycles from events. Every method reads KV afresh, so
//! any number of replicas can run side by side; the compare-and-sets serialize them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use bytes::Bytes;
use sup_bus::{Cas, subjects};
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

/// The validated model of a stored site (stored sites were valid when written; the parent is
/// taken as known so a site can be read on its own).
pub fn model_of(site: &v1::Site) -> Result<Site, ApiError> {
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

/// What changed between two versions of a site, for people reading the apply result.
fn describe_changes(old: Option<&Site>, new: &Site) -> Vec<String> {
    let Some(old) = old else {
        return vec![format!("site {} created", new.code)];
    };
    let mut out = Vec::new();
    if old.name != new.name
        || old.mode != new.mode
        || old.parent != new.parent
        || old.failover != new.failover
    {
        out.push("site settings changed".to_string());
    }
    if old.software_updates != new.software_updates {
        out.push("software update component settings changed".to_string());
    }
    let servers = |s: &Site| -> BTreeSet<String> {
        s.software_update_points
            .iter()
            .map(|p| p.server.clone())
            .collect()
    };
    let (a, b) = (servers(old), servers(new));
    for s in b.difference(&a) {
        out.push(format!("software update point added on {s}"));
    }
    for s in a.difference(&b) {
        out.push(format!("software update point removed from {s}"));
    }
    for s in a.intersection(&b) {
        if old.sup(s) != new.sup(s) || old.site_system(s) != new.site_system(s) {
            out.push(format!("software update point on {s} changed"));
        }
    }
    for slot in [SlotKind::Intranet, SlotKind::Internet] {
        if old.declared_active(slot) != new.declared_active(slot) {
            let name = new
                .declared_active(slot)
                .map(|t| t.name)
                .unwrap_or_else(|| "none".into());
            out.push(format!("declared active {} SUP: {name}", slot.as_str()));
        }
    }
    if old.nlb_clusters != new.nlb_clusters {
        out.push("NLB clusters changed".to_string());
    }
    if old.site_systems != new.site_systems && out.is_empty() {
        out.push("site systems changed".to_string());
    }
    out
}

impl Coordinator {
    pub fn new(store: Store, metrics: Metrics) -> Self {
        Self {
            store,
            metrics,
            failover_after: std::time::Duration::from_secs(30),
        }
    }

    async fn publish(&self, e: &v1::Event) -> Result<(), ApiError> {
        self.store.bus.publish_event(e).await?;
        Ok(())
    }

    async fn command(&self, cmd: v1::Command) -> Result<(), ApiError> {
        self.store.bus.publish_command(PROVISIONER, &cmd).await?;
        Ok(())
    }

    /// Returns the stored response of an op id already done.
    async fn replay<M: Message + Default>(&self, op_id: &str) -> Result<Option<M>, ApiError> {
        Ok(match self.store.op_result(op_id).await? {
            Some(b) => M::decode(b).ok(),
            None => None,
        })
    }

    async fn remember<M: Message>(&self, op_id: &str, m: &M) -> Result<(), ApiError> {
        self.store
            .record_op(op_id, Bytes::from(m.encode_to_vec()))
            .await?;
        Ok(())
    }

    async fn known_sites(&self) -> Result<BTreeMap<String, Option<String>>, ApiError> {
        Ok(self
            .store
            .sites()
            .await?
            .into_iter()
            .map(|s| (s.code.clone(), (!s.parent.is_empty()).then_some(s.parent)))
            .collect())
    }

    // ---- Applying specs ------------------------------------------------------------------

    /// Validates the whole request first; stores and reconciles only when every site is valid.
    pub async fn apply_sites(
        &self,
        req: v1::ApplySitesRequest,
    ) -> Result<v1::ApplySitesResponse, ApiError> {
        if let Some(done) = self.replay(&req.op_id).await? {
            return Ok(done);
        }
        if req.sites.is_empty() {
            return Err(ApiError::BadRequest("the request holds no site".into()));
        }
        let known = self.known_sites().await?;
        let raw: Vec<_> = req.sites.iter().map(site_from_proto).collect();
        let mut sites = validate_sites(&raw, &known).map_err(ApiError::Invalid)?;
        // Parents before children, so a child's upstream is configured from a reconciled parent.
        let depth = |code: &str| {
            let mut d = 0;
            let mut at = sites
                .iter()
                .find(|s| s.code == code)
                .and_then(|s| s.parent.clone());
            while let Some(p) = at {
                d += 1;
                if d > 64 {
                    break;
                }
                at = sites
                    .iter()
                    .find(|s| s.code == p)
                    .and_then(|s| s.parent.clone())
                    .or_else(|| known.get(&p).cloned().flatten());
            }
            d
        };
        let mut order: Vec<(usize, String)> = sites
            .iter()
            .map(|s| (depth(&s.code), s.code.clone()))
            .collect();
        order.sort();
        sites.sort_by_key(|s| order.iter().position(|(_, c)| *c == s.code));

        let mut results = Vec::new();
        for site in &sites {
            let canonical = site_to_proto(site);
            let stored = self.store.site(&site.code).await?;
            let old_model = match &stored {
                Some((s, _)) => model_of(s).ok(),
                None => None,
            };
            let changed = stored.as_ref().map(|(s, _)| s) != Some(&canonical);
            let changes = if changed {
                describe_changes(old_model.as_ref(), site)
            } else {
                Vec::new()
            };
            if changed && !req.dry_run {
                let rev = self.store.put_site(&canonical).await?;
                for slot in [SlotKind::Intranet, SlotKind::Internet] {
                    let old = old_model.as_ref().and_then(|m| m.declared_active(slot));
                    let new = site.declared_active(slot);
                    if old != new || old_model.is_none() {
                        self.record_intent(&site.code, slot, new.as_ref()).await?;
                    }
                }
                self.publish(&event(
                    &site.code,
                    "",
                    0,
                    &req.op_id,
                    format!("site:{}:{rev}", site.code),
                    Payload::SiteApplied(v1::SiteApplied {
                        site: Some(canonical.clone()),
                        changed: true,
                        changes: changes.clone(),
                    }),
                ))
                .await?;
                self.metrics.applies_changed.inc();
                tracing::info!(site = %site.code, ?changes, "site applied");
            }
            results.push(v1::SiteApplied {
                site: Some(canonical),
                changed,
                changes,
            });
        }
        if !req.dry_run {
            for site in &sites {
                self.reconcile_site(&site.code).await?;
            }
        }
        let resp = v1::ApplySitesResponse { results };
        if !req.dry_run {
            self.remember(&req.op_id, &replay_record(&resp)).await?;
        }
        Ok(resp)
    }

    fn intent_key(site: &str, slot: SlotKind) -> String {
        format!("{}.want.{}", subjects::site_key(site), slot_name(slot))
    }

    /// Records what the spec wants in a slot, stamped with the slot's current epoch: a later
    /// operator activation or failover (a newer epoch) supersedes it.
    async fn record_intent(
        &self,
        site: &str,
        slot: SlotKind,
        target: Option<&SlotTarget>,
    ) -> Result<(), ApiError> {
        let epoch = self
            .store
            .slot(site, slot_name(slot))
            .await?
            .map(|(_, r)| r)
            .unwrap_or(0);
        let value = v1::ActiveSlot {
            site: site.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            target: target.map(|t| t.name.clone()).unwrap_or_default(),
            nlb: target.is_some_and(|t| t.nlb),
            members: target.map(|t| t.members.clone()).unwrap_or_default(),
            epoch,
            since: Some(now()),
            ..Default::default()
        };
        let key = Self::intent_key(site, slot);
        self.store
            .bus
            .buckets
            .sites
            .put(&key, value.encode_to_vec().into())
            .await
            .map_err(|e| {
                ApiError::Bus(sup_bus::BusError::Kv {
                    op: "put",
                    bucket: "sup_sites".into(),
                    key,
                    message: e.to_string(),
                })
            })?;
        Ok(())
    }

    async fn intent(&self, site: &str, slot: SlotKind) -> Result<Option<v1::ActiveSlot>, ApiError> {
        let key = Self::intent_key(site, slot);
        Ok(
            match self
                .store
                .bus
                .kv_get(&self.store.bus.buckets.sites, &key)
                .await?
            {
                Some((b, _)) => v1::ActiveSlot::decode(b).ok(),
                None => None,
            },
        )
    }

    // ---- Reconciliation ------------------------------------------------------------------

    /// Brings one site's roles and slots in line with its spec. Idempotent: running it again
    /// changes nothing, and the commands it sends have deterministic ids.
    pub async fn reconcile_site(&self, code: &str) -> Result<(), ApiError> {
        let Some((site_pb, spec_rev)) = self.store.site(code).await? else {
            return Ok(());
        };
        let site = model_of(&site_pb)?;
        let roles: BTreeMap<String, v1::RoleStatus> = self
            .store
            .roles(code)
            .await?
            .into_iter()
            .map(|r| (r.server.clone(), r))
            .collect();

        // Roles the spec declares.
        for sup in &site.software_update_points {
            let desired_slot = convert::slot_to_proto(site.declared_slot_of(&sup.server)) as i32;
            let nlb = site
                .nlb_clusters
                .iter()
                .find(|c| c.members.contains(&sup.server))
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let existing = roles.get(&sup.server);
            let needs_declare = existing.is_none_or(|r| state_of(r) == RoleState::Removed);
            if needs_declare {
                let cause = format!("declare:{code}:{}:{spec_rev}", sup.server);
                let change = self
                    .role_events(code, &sup.server, &[RoleEvent::Declared], &cause, |r| {
                        r.desired_slot = desired_slot;
                        r.nlb_cluster = nlb.clone();
                    })
                    .await?;
                let _ = change;
            } else if let Some(r) = existing
                && (r.desired_slot != desired_slot || r.nlb_cluster != nlb)
            {
                self.store
                    .update_role(code, &sup.server, |cur| {
                        let mut r = cur?.clone();
                        r.desired_slot = desired_slot;
                        r.nlb_cluster = nlb.clone();
                        Some(r)
                    })
                    .await?;
            }
            let state = match self.store.role(code, &sup.server).await? {
                Some((r, _)) => state_of(&r),
                None => continue,
            };
            if state == RoleState::Declared {
                let sys = site.site_system(&sup.server).cloned();
                let role_rev = self
                    .store
                    .role(code, &sup.server)
                    .await?
                    .map(|(_, rev)| rev)
                    .unwrap_or(0);
                self.command(v1::Command {
                    id: format!("install:{code}:{}:{role_rev}", sup.server),
                    op_id: String::new(),
                    issued: Some(now()),
                    site: code.to_string(),
                    server: sup.server.clone(),
                    epoch: 0,
                    kind: Some(v1::command::Kind::InstallRole(v1::InstallRole {
                        site_system: sys.map(|s| {
                            site_pb
                                .site_systems
                                .iter()
                                .find(|x| x.server == s.server)
                                .cloned()
                                .unwrap_or_default()
                        }),
                        role: Some(convert::sup_to_proto(sup)),
                        mode: site_pb.mode,
                    })),
                })
                .await?;
            }
        }

        // Roles no longer declared.
        for (server, r) in &roles {
            let state = state_of(r);
            if site.sup(server).is_some()
                || matches!(state, RoleState::Removing | RoleState::Removed)
            {
                continue;
            }
            self.remove_role_record(code, server, spec_rev).await?;
        }

        // Slots.
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            self.reconcile_slot(&site, slot).await?;
        }
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            self.check_failover(&site, slot).await?;
        }
        self.configure_component(&site, spec_rev).await?;
        Ok(())
    }

    /// Automatic failover: when the holder of a slot of an `auto` site has been unhealthy for
    /// `failover_after`, move the slot (compare-and-set, new epoch) to the best ready and healthy
    /// standby that may hold it. With none, keep the slot and raise an alert (once per epoch).
    /// `manual` sites only see the health events.
    async fn check_failover(&self, site: &Site, slot: SlotKind) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let Some((a, epoch)) = self.store.slot(code, slot_name(slot)).await? else {
            return Ok(());
        };
        if a.target.is_empty() {
            return Ok(());
        }
        let roles: BTreeMap<String, v1::RoleStatus> = self
            .store
            .roles(code)
            .await?
            .into_iter()
            .map(|r| (r.server.clone(), r))
            .collect();
        let now = SystemTime::now();
        let unhealthy_for = |server: &str| -> Option<std::time::Duration> {
            let r = roles.get(server)?;
            if state_of(r) != RoleState::Unhealthy {
                return None;
            }
            let since = r.unhealthy_since.or(r.updated).and_then(|t| {
                SystemTime::UNIX_EPOCH
                    .checked_add(std::time::Duration::new(t.seconds.max(0) as u64, 0))
            })?;
            now.duration_since(since).ok()
        };
        // One node of an NLB cluster down leaves the cluster serving; all down does not.
        let down: Vec<std::time::Duration> =
            a.members.iter().filter_map(|m| unhealthy_for(m)).collect();
        if down.len() < a.members.len() || down.is_empty() {
            return Ok(());
        }
        let longest = down.iter().min().copied().unwrap_or_default();
        if longest < self.failover_after {
            return Ok(());
        }
        if site.failover != sup_core::model::Failover::Auto {
            return Ok(());
        }
        let healthy_ready = |server: &str| {
            roles.get(server).is_some_and(|r| {
                state_of(r) == RoleState::Ready && r.health == v1::Health::Healthy as i32
            })
        };
        let mut candidates: Vec<SlotTarget> = site
            .software_update_points
            .iter()
            .filter_map(|s| site.target(&s.server))
            .chain(
                site.nlb_clusters
                    .iter()
                    .filter_map(|c| site.target(&c.name)),
            )
            .filter(|t| t.name != a.target && t.members.iter().all(|m| healthy_ready(m)))
            .collect();
        // NLB clusters before single servers (more capacity), then by name for a stable choice.
        candidates.sort_by(|x, y| y.nlb.cmp(&x.nlb).then(x.name.cmp(&y.name)));
        let cause = format!(
            "failover: {} unhealthy for {}s",
            a.target,
            longest.as_secs()
        );
        for t in candidates {
            match self.activate(site, slot, &t.name, &cause, "").await {
                Ok(new) => {
                    tracing::warn!(site = code, slot = slot_name(slot), from = %a.target, to = %new.target, epoch = new.epoch, "failed over");
                    return Ok(());
                }
                Err(ApiError::Precondition(_)) => continue,
                Err(ApiError::Aborted(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.publish(&event(
            code,
            &a.target,
            epoch,
            "",
            format!("alert:no-standby:{code}:{}:{epoch}", slot_name(slot)),
            Payload::Alert(v1::Alert {
                kind: "no_healthy_standby".into(),
                message: format!(
                    "the active {} SUP {} of site {code} is unhealthy and no ready, healthy standby can take the slot",
                    slot_name(slot),
                    a.target
                ),
            }),
        ))
        .await
    }

    async fn remove_role_record(
        &self,
        code: &str,
        server: &str,
        spec_rev: u64,
    ) -> Result<(), ApiError> {
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            if let Some((a, rev)) = self.store.slot(code, slot_name(slot)).await?
                && a.members.iter().any(|m| m == server)
            {
                self.clear_slot(code, slot, rev, &a, "role removed").await?;
            }
        }
        let cause = format!("remove:{code}:{server}:{spec_rev}");
        let after = self
            .role_events(code, server, &[RoleEvent::RemoveRequested], &cause, |_| {})
            .await?;
        if after == Some(RoleState::Removing) {
            self.command(v1::Command {
                id: format!("remove:{code}:{server}:{spec_rev}"),
                issued: Some(now()),
                site: code.to_string(),
                server: server.to_string(),
                kind: Some(v1::command::Kind::RemoveRole(v1::RemoveRole {})),
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    async fn reconcile_slot(&self, site: &Site, slot: SlotKind) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let current = self.store.slot(code, slot_name(slot)).await?;
        let holder = current.as_ref().and_then(|(a, _)| slot_target(a));
        let epoch = current.as_ref().map(|(_, r)| *r).unwrap_or(0);
        let intent = self.intent(code, slot).await?;
        // The intent stands unless the slot moved on after it was recorded.
        let wanted: Option<Option<String>> = match &intent {
            Some(i) if i.epoch >= epoch || holder.is_none() => Some(
                (!i.target.is_empty())
                    .then(|| i.target.clone())
                    .filter(|t| site.target(t).is_some()),
            ),
            _ => None,
        };
        match wanted {
            Some(Some(target)) if holder.as_ref().map(|h| &h.name) != Some(&target) => {
                match self.activate(site, slot, &target, "declared", "").await {
                    Ok(_) | Err(ApiError::Precondition(_)) | Err(ApiError::Aborted(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(None) => {
                if let (Some((a, rev)), Some(_)) = (&current, &holder) {
                    self.clear_slot(code, slot, *rev, a, "declared none")
                        .await?;
                }
            }
            _ => {}
        }
        // Project the slot onto its roles (idempotent and fenced by epoch): repairs what a crash
        // between the slot write and the role writes left behind.
        if let Some((a, rev)) = self.store.slot(code, slot_name(slot)).await? {
            self.project_slot(code, slot, &a, rev).await?;
        }
        Ok(())
    }

    /// Applies a slot's holder at `epoch` to the site's role records: every role is stamped with
    /// the epoch, non-members that held the slot are deactivated first, then members activated.
    /// A role already stamped with a newer epoch of this slot is left alone, so a late or repeated
    /// projection changes nothing (and cannot re-activate a former holder).
    pub async fn project_slot(
        &self,
        code: &str,
        slot: SlotKind,
        a: &v1::ActiveSlot,
        epoch: u64,
    ) -> Result<(), ApiError> {
        let cause = format!("active:{code}:{}:{epoch}", slot_name(slot));
        for r in self.store.roles(code).await? {
            if !a.members.contains(&r.server) {
                self.fenced_slot_update(code, &r.server, slot, epoch, false, &cause)
                    .await?;
            }
        }
        for m in &a.members {
            self.fenced_slot_update(code, m, slot, epoch, true, &cause)
                .await?;
        }
        Ok(())
    }

    async fn fenced_slot_update(
        &self,
        code: &str,
        server: &str,
        slot: SlotKind,
        epoch: u64,
        member: bool,
        cause: &str,
    ) -> Result<(), ApiError> {
        let slot_pb = convert::slot_to_proto(Some(slot)) as i32;
        self.store
            .update_role(code, server, |cur| {
                let cur = cur?;
                let seen = match slot {
                    SlotKind::Intranet => cur.intranet_epoch,
                    SlotKind::Internet => cur.internet_epoch,
                };
                if seen >= epoch {
                    return None;
                }
                let mut r = cur.clone();
                r.previous = r.state;
                match slot {
                    SlotKind::Intranet => r.intranet_epoch = epoch,
                    SlotKind::Internet => r.internet_epoch = epoch,
                }
                let event = if member {
                    r.slot = slot_pb;
                    Some(RoleEvent::Activated)
                } else if r.slot == slot_pb {
                    r.slot = v1::Slot::Unspecified as i32;
                    Some(RoleEvent::Deactivated)
                } else {
                    None
                };
                if let Some(event) = event {
                    match lifecycle::apply(state_of(&r), event) {
                        Ok(next) => r.state = role_state_to_proto(next) as i32,
                        Err(e) => {
                            tracing::warn!(site = code, server, error = %e, "slot projection")
                        }
                    }
                    r.last_cause = cause.to_string();
                    r.updated = Some(now());
                }
                Some(r)
            })
            .await?;
        Ok(())
    }

    async fn clear_slot(
        &self,
        code: &str,
        slot: SlotKind,
        rev: u64,
        a: &v1::ActiveSlot,
        why: &str,
    ) -> Result<(), ApiError> {
        let cleared = v1::ActiveSlot {
            site: code.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            since: Some(now()),
            previous: a.target.clone(),
            cause: why.to_string(),
            ..Default::default()
        };
        match self.write_slot(code, slot, &cleared, Some(rev)).await? {
            Cas::Won(epoch) => {
                self.metrics.slot_changes.inc();
                self.project_slot(code, slot, &cleared, epoch).await
            }
            Cas::Lost => Err(ApiError::Aborted(format!(
                "the {} slot of {code} changed concurrently; retry",
                slot_name(slot)
            ))),
        }
    }

    /// Makes `target` the holder of `slot`: validated against current role states, decided by
    /// compare-and-set on the slot key. The new revision is the epoch.
    pub async fn activate(
        &self,
        site: &Site,
        slot: SlotKind,
        target: &str,
        cause: &str,
        op_id: &str,
    ) -> Result<v1::ActiveSlot, ApiError> {
        let active = self.transition(site, slot, target, cause, op_id).await?;
        self.confirm(&site.code, slot, &active).await?;
        Ok(active)
    }

    /// Moves the slot to `target` (or finds it there) without waiting for the announcement.
    async fn transition(
        &self,
        site: &Site,
        slot: SlotKind,
        target: &str,
        cause: &str,
        op_id: &str,
    ) -> Result<v1::ActiveSlot, ApiError> {
        let code = site.code.as_str();
        let roles: BTreeMap<String, RoleState> = self
            .store
            .roles(code)
            .await?
            .iter()
            .map(|r| (r.server.clone(), state_of(r)))
            .collect();
        let other_slot = match slot {
            SlotKind::Intranet => SlotKind::Internet,
            SlotKind::Internet => SlotKind::Intranet,
        };
        let other = self
            .store
            .slot(code, slot_name(other_slot))
            .await?
            .and_then(|(a, _)| slot_target(&a));
        let t = check_activation(
            site,
            slot,
            target,
            |s| roles.get(s).copied(),
            other.as_ref(),
        )
        .map_err(|e| ApiError::Precondition(e.to_string()))?;
        // "Already active" is an answer, so it comes from the leader, like the CAS base.
        let current = self.store.slot_from_leader(code, slot_name(slot)).await?;
        if let Some((a, rev)) = &current
            && a.target == t.name
        {
            return Ok(v1::ActiveSlot {
                epoch: *rev,
                ..a.clone()
            });
        }
        let value = v1::ActiveSlot {
            site: code.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            target: t.name.clone(),
            nlb: t.nlb,
            members: t.members.clone(),
            epoch: 0,
            since: Some(now()),
            previous: current
                .as_ref()
                .map(|(a, _)| a.target.clone())
                .unwrap_or_default(),
            cause: cause.to_string(),
            op_id: op_id.to_string(),
        };
        let epoch = match self
            .write_slot(code, slot, &value, current.as_ref().map(|(_, r)| *r))
            .await?
        {
            Cas::Won(epoch) => epoch,
            Cas::Lost => {
                self.metrics.activations_lost.inc();
                return Err(ApiError::Aborted(format!(
                    "the {} slot of {code} changed while activating {target}; retry",
                    slot_name(slot)
                )));
            }
        };
        self.metrics.activations_won.inc();
        self.metrics.slot_changes.inc();
        tracing::info!(site = code, slot = slot_name(slot), target = %t.name, epoch, cause, "active SUP changed");
        self.project_slot(code, slot, &value, epoch).await?;
        if let Some((_, spec_rev)) = self.store.site(code).await? {
            self.configure_component(site, spec_rev).await?;
        }
        // Children synchronize from this site's active SUP: re-point them.
        if slot == SlotKind::Intranet {
            for child in self
                .store
                .sites()
                .await?
                .into_iter()
                .filter(|s| s.parent == code)
            {
                if let (Ok(m), Some((_, rev))) =
                    (model_of(&child), self.store.site(&child.code).await?)
                {
                    self.configure_component(&m, rev).await?;
                }
            }
        }
        Ok(v1::ActiveSlot { epoch, ..value })
    }

    /// Sends the site's component settings to the active SUP(s), fenced by the slot's epoch. The
    /// command id names the epoch, the spec revision and the upstream, so re-sending is a no-op.
    /// A SUP whose upstream has no holder is not configured (never pointed at Microsoft Update
    /// instead): an alert says what it waits for.
    async fn configure_component(&self, site: &Site, spec_rev: u64) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let mut settings = None;
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            let Some((a, epoch)) = self.store.slot(code, slot_name(slot)).await? else {
                continue;
            };
            if a.target.is_empty() {
                continue;
            }
            let (upstream_server, upstream_port, upstream_ssl) =
                match self.upstream(site, slot).await? {
                    Upstream::Server { name, port, ssl } => (name, port, ssl),
                    Upstream::MicrosoftUpdate | Upstream::None => (String::new(), 0, false),
                    Upstream::Waiting(why) => {
                        self.publish(&event(
                            code,
                            &a.target,
                            epoch,
                            "",
                            format!(
                                "alert:waiting-upstream:{code}:{}:{epoch}:{spec_rev}",
                                slot_name(slot)
                            ),
                            Payload::Alert(v1::Alert {
                                kind: "waiting_for_upstream".into(),
                                message: format!("{}: {why}", a.target),
                            }),
                        ))
                        .await?;
                        continue;
                    }
                };
            if settings.is_none() {
                settings = Some(self.effective_settings(site).await?);
            }
            // A child's settings come from the top site: a change there is a new configuration
            // of the child's SUP though the child's own spec did not change.
            let digest = settings_digest(settings.as_ref());
            let role = a
                .members
                .first()
                .and_then(|m| site.sup(m))
                .map(convert::sup_to_proto);
            self.command(v1::Command {
                id: format!(
                    "configure:{code}:{}:{epoch}:{spec_rev}:{digest:016x}:{upstream_server}",
                    slot_name(slot)
                ),
                issued: Some(now()),
                site: code.to_string(),
                server: a.target.clone(),
                epoch,
                kind: Some(v1::command::Kind::ConfigureComponent(
                    v1::ConfigureComponent {
                        settings: settings.clone(),
                        upstream_server,
                        upstream_port,
                        upstream_ssl,
                        slot: convert::slot_to_proto(Some(slot)) as i32,
                        role,
                    },
                )),
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    // ---- Role lifecycle --------------------------------------------------------------------

    /// Applies role events through the lifecycle, once per `cause` (an event id): a redelivered
    /// cause changes nothing. Returns the state after a change, `None` when nothing changed. The
    /// announcer publishes the change.
    pub async fn role_events(
        &self,
        site: &str,
        server: &str,
        events: &[RoleEvent],
        cause: &str,
        edit: impl Fn(&mut v1::RoleStatus),
    ) -> Result<Option<RoleState>, ApiError> {
        let create = events.first() == Some(&RoleEvent::Declared);
        self.role_change(site, server, cause, create, |r| {
            edit(r);
            events.to_vec()
        })
        .await
    }

    /// The general form: `decide` sees the current record inside the compare-and-set loop, may
    /// edit it, and returns the lifecycle events to apply. Deciding inside the loop is what keeps
    /// concurrent replicas from overwriting each other's edits.
    pub async fn role_change(
        &self,
        site: &str,
        server: &str,
        cause: &str,
        create: bool,
        decide: impl Fn(&mut v1::RoleStatus) -> Vec<RoleEvent>,
    ) -> Result<Option<RoleState>, ApiError> {
        let trace_context = sup_bus::trace::current_traceparent();
        let change = self
            .store
            .update_role(site, server, |cur| {
                if cur.is_some_and(|r| r.last_cause == cause) {
                    return None;
                }
                let mut r = match cur {
                    Some(r) => r.clone(),
                    None if create => v1::RoleStatus {
                        site: site.to_string(),
                        server: server.to_string(),
                        state: v1::RoleState::Unspecified as i32,
                        health: v1::Health::Unknown as i32,
                        ..Default::default()
                    },
                    None => return None,
                };
                let events = decide(&mut r);
                let before = role_state_from_proto(r.state);
                let mut state = before.unwrap_or(RoleState::Removed);
                for e in &events {
                    match lifecycle::apply(state, *e) {
                        Ok(s) => state = s,
                        Err(err) => {
                            tracing::debug!(site, server, %err, "event ignored by the lifecycle")
                        }
                    }
                }
                if before.is_none() {
                    state = RoleState::Declared;
                }
                // Nothing to record (a repeated health or verification milestone, say): no
                // write, no announcement, no reconciliation.
                if let Some(old) = cur
                    && before == Some(state)
                    && same_apart_from_bookkeeping(old, &r)
                {
                    return None;
                }
                r.previous = r.state;
                r.state = role_state_to_proto(state) as i32;
                r.last_cause = cause.to_string();
                r.updated = Some(now());
                if let Some(tc) = &trace_context {
                    r.trace_context = tc.clone();
                }
                if state != RoleState::Unhealthy {
                    r.unhealthy_since = None;
                } else if r.unhealthy_since.is_none() {
                    r.unhealthy_since = r.updated;
                }
                Some(r)
            })
            .await?;
        Ok(change.map(|c| state_of(&c.after)))
    }

    /// Advances state from an event another service published.
    pub async fn handle_event(&self, e: &v1::Event) -> Result<(), ApiError> {
        let site = e.site.as_str();
        let server = e.server.as_str();
        let Some(payload) = &e.payload else {
            return Ok(());
        };
        let mut touched = false;
        match payload {
            Payload::Milestone(m) => match MilestoneKind::from_name(&m.name) {
                Some(MilestoneKind::RoleInstallStarted) => {
                    touched = self
                        .role_events(site, server, &[RoleEvent::InstallStarted], &e.id, |r| {
                            r.verified.clear()
                        })
                        .await?
                        .is_some();
                }
                Some(MilestoneKind::RoleInstallSucceeded) => {
                    touched = self
                        .role_change(site, server, &e.id, false, |r| {
                            let mut events =
                                vec![RoleEvent::InstallSucceeded, RoleEvent::VerifyStarted];
                            if verified_both(r) {
                                events.push(RoleEvent::Verified);
                            }
                            events
                        })
                        .await?
                        .is_some();
                }
                Some(MilestoneKind::RoleInstallFailed) => {
                    let why = m
                        .fields
                        .get("reason")
                        .cloned()
                        .unwrap_or_else(|| m.line.clone());
                    let reason = format!("setup failed ({}): {why}", m.log);
                    touched = self
                        .role_events(site, server, &[RoleEvent::InstallFailed], &e.id, |r| {
                            r.reason = reason.clone()
                        })
                        .await?
                        .is_some();
                }
                Some(
                    kind @ (MilestoneKind::WsusComponentsHealthy | MilestoneKind::WsusDatabaseOk),
                ) => {
                    let name = kind.as_str();
                    touched = self
                        .role_change(site, server, &e.id, false, |r| {
                            if !r.verified.iter().any(|v| v == name) {
                                r.verified.push(name.to_string());
                                r.verified.sort();
                            }
                            if verified_both(r) && state_of(r).is_installed() {
                                vec![RoleEvent::VerifyStarted, RoleEvent::Verified]
                            } else {
                                Vec::new()
                            }
                        })
                        .await?
                        .is_some();
                }
                Some(MilestoneKind::SyncStarted) => self.sync_started(site, e).await?,
                Some(MilestoneKind::SyncSucceeded) => self.sync_finished(site, e, true).await?,
                Some(MilestoneKind::SyncFailed) => self.sync_finished(site, e, false).await?,
                _ => {}
            },
            Payload::Provisioning(p) => {
                let (events, reason): (&[RoleEvent], _) = match p.step.as_str() {
                    "accepted" => (&[RoleEvent::ProvisionStarted], String::new()),
                    "installing" => (
                        &[RoleEvent::ProvisionStarted, RoleEvent::InstallStarted],
                        String::new(),
                    ),
                    "failed" => (&[RoleEvent::InstallFailed], p.detail.clone()),
                    "removed" => (&[RoleEvent::RemoveCompleted], String::new()),
                    _ => (&[], String::new()),
                };
                if !events.is_empty() {
                    touched = self
                        .role_events(site, server, events, &e.id, |r| {
                            if !reason.is_empty() {
                                r.reason = reason.clone();
                            }
                        })
                        .await?
                        .is_some();
                }
            }
            Payload::HealthChanged(h) => {
                let health = h.to;
                let reason = h
                    .failing
                    .iter()
                    .map(|c| format!("{}: {}", c.component, c.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                touched = self
                    .role_change(site, server, &e.id, false, |r| {
                        r.health = health;
                        match v1::Health::try_from(health) {
                            Ok(v1::Health::Unhealthy) => {
                                r.reason = reason.clone();
                                vec![RoleEvent::HealthLost]
                            }
                            Ok(v1::Health::Healthy) => vec![RoleEvent::HealthRestored {
                                holds_slot: r.slot != v1::Slot::Unspecified as i32,
                            }],
                            _ => Vec::new(),
                        }
                    })
                    .await?
                    .is_some();
            }
            Payload::SyncStarted(_) => self.sync_started(site, e).await?,
            Payload::SyncFinished(f) => {
                let ok = f
                    .run
                    .as_ref()
                    .is_some_and(|r| r.state == v1::SyncState::Succeeded as i32);
                self.sync_finished(site, e, ok).await?
            }
            _ => {}
        }
        if touched {
            self.reconcile_site(site).await?;
        }
        Ok(())
    }

    async fn sync_started(&self, site: &str, e: &v1::Event) -> Result<(), ApiError> {
        let t = e.time;
        self.store
            .update_sync_status(site, |mut s| {
                s.state = v1::SyncState::Running as i32;
                s.last_started = t;
                s
            })
            .await?;
        Ok(())
    }

    async fn sync_finished(&self, site: &str, e: &v1::Event, ok: bool) -> Result<(), ApiError> {
        let t = e.time;
        self.store
            .update_sync_status(site, |mut s| {
                s.state = if ok {
                    v1::SyncState::Succeeded
                } else {
                    v1::SyncState::Failed
                } as i32;
                s.last_finished = t;
                s
            })
            .await?;
        Ok(())
    }

    // ---- Operator requests -------------------------------------------------------------------

    pub async fn get_site(&self, code: &str) -> Result<v1::Site, ApiError> {
        self.store
            .site(code)
            .await?
            .map(|(s, _)| s)
            .ok_or_else(|| ApiError::NotFound(format!("site {code} is not applied")))
    }

    pub async fn delete_site(
        &self,
        code: &str,
        op_id: &str,
    ) -> Result<v1::DeleteSiteResponse, ApiError> {
        if let Some(done) = self.replay(op_id).await? {
            return Ok(done);
        }
        let Some((_, spec_rev)) = self.store.site(code).await? else {
            return Err(ApiError::NotFound(format!("site {code} is not applied")));
        };
        let children: Vec<String> = self
            .store
            .sites()
            .await?
            .into_iter()
            .filter(|s| s.parent == code)
            .map(|s| s.code)
            .collect();
        if !children.is_empty() {
            return Err(ApiError::Precondition(format!(
                "site {code} is the parent of {}; delete or re-parent them first",
                children.join(", ")
            )));
        }
        for r in self.store.roles(code).await? {
            if !matches!(state_of(&r), RoleState::Removing | RoleState::Removed) {
                self.remove_role_record(code, &r.server, spec_rev).await?;
            }
        }
        self.store.delete_site(code).await?;
        self.publish(&event(
            code,
            "",
            0,
            op_id,
            format!("site-deleted:{code}:{spec_rev}"),
            Payload::SiteDeleted(v1::SiteDeleted {
                code: code.to_string(),
            }),
        ))
        .await?;
        let resp = v1::DeleteSiteResponse { deleted: true };
        self.remember(op_id, &resp).await?;
        Ok(resp)
    }

    /// Stores an edited spec of one site (validated like an apply) and reconciles it.
    async fn edit_site(
        &self,
        code: &str,
        edit: impl FnOnce(&mut sup_core::spec::RawSite) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let stored = self.get_site(code).await?;
        let mut raw = site_from_proto(&stored);
        edit(&mut raw)?;
        let known = self.known_sites().await?;
        let site = validate_sites(&[raw], &known)
            .map_err(ApiError::Invalid)?
            .pop()
            .ok_or_else(|| ApiError::BadRequest(format!("site {code} did not validate")))?;
        self.apply_sites(v1::ApplySitesRequest {
            sites: vec![site_to_proto(&site)],
            op_id: String::new(),
            dry_run: false,
        })
        .await?;
        Ok(())
    }

    pub async fn add_role(&self, req: v1::AddRoleRequest) -> Result<v1::RoleStatus, ApiError> {
        if let Some(done) = self.replay(&req.op_id).await? {
            return Ok(done);
        }
        let role = req
            .role
            .clone()
            .ok_or_else(|| ApiError::BadRequest("role is required".into()))?;
        let server = sup_core::names::normalize_host(&role.server);
        self.edit_site(&req.site, |raw| {
            if let Some(sys) = &req.site_system {
                let sys = convert::site_system_from_proto(sys);
                raw.site_system.retain(|s| {
                    sup_core::names::normalize_host(&s.server)
                        != sup_core::names::normalize_host(&sys.server)
                });
                raw.site_system.push(sys);
            }
            raw.software_update_point
                .retain(|s| sup_core::names::normalize_host(&s.server) != server);
            raw.software_update_point
                .push(convert::sup_from_proto(&role));
            Ok(())
        })
        .await?;
        let status = self
            .store
            .role(&req.site, &server)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default();
        self.remember(&req.op_id, &status).await?;
        Ok(status)
    }

    pub async fn remove_role(
        &self,
        req: v1::RemoveRoleRequest,
    ) -> Result<v1::RoleStatus, ApiError> {
        if let Some(done) = self.replay(&req.op_id).await? {
            return Ok(done);
        }
        let server = sup_core::names::normalize_host(&req.server);
        self.edit_site(&req.site, |raw| {
            if let Some(c) = raw.nlb_cluster.iter().find(|c| {
                c.members
                    .iter()
                    .any(|m| sup_core::names::normalize_host(m) == server)
            }) {
                return Err(ApiError::Precondition(format!(
                    "{server} is a node of NLB cluster {}; take it out of the cluster first",
                    c.name
                )));
            }
            let before = raw.software_update_point.len();
            raw.software_update_point
                .retain(|s| sup_core::names::normalize_host(&s.server) != server);
            if raw.software_update_point.len() == before {
                return Err(ApiError::NotFound(format!(
                    "{server} has no software update point in site {}",
                    req.site
                )));
            }
            Ok(())
        })
        .await?;
        let status = self
            .store
            .role(&req.site, &server)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default();
        self.remember(&req.op_id, &status).await?;
        Ok(status)
    }

    /// The operator's "use this server as the active software update point".
    pub async fn set_active(&self, req: v1::SetActiveRequest) -> Result<v1::ActiveSlot, ApiError> {
        if let Some(done) = self.replay(&req.op_id).await? {
            return Ok(done);
        }
        let slot = convert::slot_from_proto(req.slot)
            .ok_or_else(|| ApiError::BadRequest("slot must be intranet or internet".into()))?;
        let site = model_of(&self.get_site(&req.site).await?)?;
        let target = sup_core::names::normalize_host(&req.target);
        let active = self
            .transition(&site, slot, &target, "operator", &req.op_id)
            .await?;
        // The operator's choice is the new intent, stamped with the epoch it won.
        let key = Self::intent_key(&site.code, slot);
        if let Err(e) = self
            .store
            .bus
            .buckets
            .sites
            .put(&key, active.encode_to_vec().into())
            .await
        {
            tracing::warn!(site = %site.code, error = %e, "recording the operator's activation as the intent");
        }
        self.confirm(&site.code, slot, &active).await?;
        self.remember(&req.op_id, &active).await?;
        Ok(active)
    }

    /// Waits (a bounded while) until the announcer has passed the slot's revision. An operator's
    /// answer promises the change is in the audit trail too, and every writer of a slot (operator,
    /// reconcile, failover) waiting like this keeps the writes from running further ahead of the
    /// announcements than the slot's KV history reaches.
    async fn confirm(
        &self,
        code: &str,
        slot: SlotKind,
        active: &v1::ActiveSlot,
    ) -> Result<(), ApiError> {
        if self.announced(active.epoch).await {
            return Ok(());
        }
        Err(ApiError::Unconfirmed(format!(
            "the {} slot of {code} is {} at epoch {}, but the change is not yet in the event history; retry with the same op id",
            slot_name(slot),
            active.target,
            active.epoch
        )))
    }

    /// Whether the slot announcements reach `revision` within [`ANNOUNCE_WAIT`].
    async fn announced(&self, revision: u64) -> bool {
        self.store
            .announced(Announced::Active, revision, ANNOUNCE_WAIT)
            .await
    }

    /// Compare-and-set of a slot over `base`, written only while the announcements are less
    /// than [`Announced::unannounced_max`] revisions behind `base`: a slot then never holds more
    /// changes the event history lacks than its KV history keeps, however many writers storm it
    /// while the announcers are down, and a write right after a NATS election does not wait for
    /// the announcers to recover first.
    async fn write_slot(
        &self,
        code: &str,
        slot: SlotKind,
        value: &v1::ActiveSlot,
        base: Option<u64>,
    ) -> Result<Cas, ApiError> {
        let behind = Announced::Active.unannounced_max();
        if let Some(base) = base
            && !self.announced(base.saturating_sub(behind)).await
        {
            return Err(ApiError::Unconfirmed(format!(
                "the {} slot of {code} is at epoch {base} and the event history is more than {behind} changes behind; retry",
                slot_name(slot)
            )));
        }
        Ok(self
            .store
            .cas_slot(code, slot_name(slot), value, base)
            .await?)
    }

    pub async fn status(&self, only: &str) -> Result<v1::StatusResponse, ApiError> {
        let sites = if only.is_empty() {
            self.store.sites().await?
        } else {
            vec![self.get_site(only).await?]
        };
        let mut out = Vec::new();
        for s in sites {
            let slot = |a: Option<(v1::ActiveSlot, u64)>| {
                a.filter(|(a, _)| !a.target.is_empty())
                    .map(|(a, rev)| v1::ActiveSlot { epoch: rev, ..a })
            };
            let intranet = slot(self.store.slot(&s.code, "intranet").await?);
            let internet = slot(self.store.slot(&s.code, "internet").await?);
            let roles: Vec<v1::RoleStatus> = self
                .store
                .roles(&s.code)
                .await?
                .into_iter()
                .filter(|r| state_of(r) != RoleState::Removed)
                .collect();
            let mut sync = self
                .store
                .sync_status(&s.code)
                .await?
                .unwrap_or(v1::SyncStatus {
                    state: v1::SyncState::NeverRun as i32,
                    ..Default::default()
                });
            // The scheduler's record says when the next run (or retry) is; without one, the
            // schedule does.
            let planned = match self.store.bus.schedule_record(&s.code).await {
                Ok(r) => r.and_then(|(r, _)| [r.next, r.retry_at].into_iter().flatten().min()),
                Err(e @ sup_bus::BusError::Decode { .. }) => {
                    tracing::warn!(site = %s.code, error = %e, "unreadable schedule record; the schedule itself gives the next run");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let model = model_of(&s).ok();
            match planned {
                Some(secs) => {
                    sync.next = Some(sup_proto::prost_types::Timestamp {
                        seconds: secs,
                        nanos: 0,
                    });
                }
                None if s.parent.is_empty() => {
                    // A site that does not synchronize has no scheduled run.
                    if let Some(m) = &model
                        && let Some(top) = &m.software_updates.top
                        && m.software_updates.sync_source != SyncSource::None
                    {
                        sync.next = top
                            .schedule
                            .next_fire_utc(m.time_zone, chrono::Utc::now())
                            .map(|t| SystemTime::from(t).into());
                    }
                }
                None => {}
            }
            let mut role_sync = Vec::new();
            if let Some(m) = &model {
                sync.time_zone = m.time_zone.name().to_string();
                sync.schedule_token = m
                    .software_updates
                    .top
                    .as_ref()
                    .and_then(|t| sup_core::token::from_schedule(&t.schedule).ok())
                    .unwrap_or_default();
                for (slot, holder) in [
                    (SlotKind::Intranet, &intranet),
                    (SlotKind::Internet, &internet),
                ] {
                    let Some(holder) = holder else { continue };
                    let upstream = self.upstream(m, slot).await?;
                    for server in &holder.members {
                        role_sync.push(v1::RoleSync {
                            server: server.clone(),
                            upstream: upstream.label().unwrap_or_default(),
                            waiting: match &upstream {
                                Upstream::Waiting(why) => why.clone(),
                                _ => String::new(),
                            },
                        });
                    }
                }
            }
            // The provisioner's last reading of the site's control file.
            let drift = match self
                .store
                .bus
                .kv_get(&self.store.bus.buckets.sites, &subjects::drift_key(&s.code))
                .await?
            {
                Some((b, _)) => v1::DriftDetected::decode(b)
                    .map(|d| d.fields)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.push(v1::SiteStatus {
                drift,
                site: Some(s),
                intranet,
                internet,
                roles,
                sync: Some(sync),
                role_sync,
            });
        }
        Ok(v1::StatusResponse { sites: out })
    }
}
