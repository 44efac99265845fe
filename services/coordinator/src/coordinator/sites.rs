//! Applying sites and their roles: the site file, one role added or removed, a site deleted.

use futures::{StreamExt as _, TryStreamExt as _};

use super::*;

/// Sites of one depth stored, then reconciled, at once by an apply: a site costs a few dozen
/// sequential round trips, which one after another held a thousand-site apply to minutes.
const SITES_IN_FLIGHT: usize = 32;

impl Coordinator {
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
        let sites = validate_sites(&raw, &known).map_err(ApiError::Invalid)?;
        // Parents before children, so a child's upstream is configured from a reconciled parent;
        // the sites of one depth are independent of each other and handled at once.
        let waves = sup_core::hierarchy::depth_waves(sites, &known);
        let mut results = Vec::new();
        for wave in &waves {
            let stored: Vec<v1::SiteApplied> = futures::stream::iter(0..wave.len())
                .map(|i| self.store_applied(&wave[i], &req.op_id, req.dry_run))
                .buffered(SITES_IN_FLIGHT)
                .try_collect()
                .await?;
            results.extend(stored);
            // Counted among the applied sites once stored, in one write for the whole depth
            // (each site's own would contend for the index key); every site of the request, so
            // an apply repeated after a crash between the two writes mends the index.
            if !req.dry_run {
                let codes: Vec<&str> = wave.iter().map(|s| s.code.as_str()).collect();
                self.store.index_sites(&codes).await?;
            }
        }
        if !req.dry_run {
            for wave in &waves {
                futures::stream::iter(0..wave.len())
                    .map(|i| self.reconcile_site(&wave[i].code))
                    .buffer_unordered(SITES_IN_FLIGHT)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
        }
        let resp = v1::ApplySitesResponse { results };
        if !req.dry_run {
            self.remember(&req.op_id, &replay_record(&resp)).await?;
        }
        Ok(resp)
    }

    /// Stores one validated site of an apply when it changed (its spec, its declared slots'
    /// intents, a `SiteApplied` event); what the apply answers for it.
    async fn store_applied(
        &self,
        site: &sup_core::model::Site,
        op_id: &str,
        dry_run: bool,
    ) -> Result<v1::SiteApplied, ApiError> {
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
        if changed && !dry_run {
            let rev = self.store.put_site_spec(&canonical).await?;
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
                op_id,
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
        Ok(v1::SiteApplied {
            site: Some(canonical),
            changed,
            changes,
        })
    }

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
    pub(super) async fn edit_site(
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
}
