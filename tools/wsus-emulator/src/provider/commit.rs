//! What a commit does to the emulated site systems, as ConfigMgr's components would react to
//! the committed site control file: SMS_SITE_COMPONENT_MANAGER installs a new SUP row's role
//! and removes a deleted one's, WCM applies the components' settings on the active SUP, and
//! WSyncMgr runs when `Sync Now` changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sup_core::catalog;
use sup_proto::v1;
use sup_smsprov::map::{
    CLIENT_REPORTING_LEVEL, DEFAULT_USE_PARENT_WSUS, DEFAULT_WSUS, PARENT_WSUS, PARENT_WSUS_PORT,
    PROXY_NAME, PROXY_SERVER_PORT, SSL_TO_PARENT_WSUS, SSL_WSUS, SUPPORTED_TITLE_LANGUAGES,
    SUPPORTED_UPDATE_LANGUAGES, SYNC_NOW, USE_PROXY, WSUS_IIS_PORT, WSUS_IIS_SSL_PORT,
};
use sup_smsprov::scf::{Component, ComponentName, Role, SysResUse, prop, server_of_nal_path};
use sup_smsprov::wmi as sms;
use sup_wsman::fault::code;

use super::{Commit, Failure, Provider, Scf, lock, wmi};
use crate::state::Fault;

/// How long after its parent's cycle a child site's cycle starts.
const CHILD_NOTIFICATION_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Tells apart the emulator calls one commit makes, so none is taken for a replay.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn op_id(site: &str, seq: u64, what: &str) -> String {
    format!(
        "scf:{site}:{seq}:{what}:{}",
        CALLS.fetch_add(1, Ordering::Relaxed)
    )
}

struct Parsed {
    sups: Vec<SysResUse>,
    wcm: Option<Component>,
    sync: Option<Component>,
}

fn parse(scf: &Scf) -> Parsed {
    let components: Vec<Component> = scf
        .components
        .iter()
        .filter_map(sms::component_from_instance)
        .collect();
    Parsed {
        sups: scf
            .rows
            .iter()
            .filter_map(sms::row_from_instance)
            .filter(|r| r.role == Role::SoftwareUpdatePoint)
            .collect(),
        wcm: components
            .iter()
            .find(|c| c.name == ComponentName::WsusConfigurationManager)
            .cloned(),
        sync: components
            .iter()
            .find(|c| c.name == ComponentName::WsusSyncManager)
            .cloned(),
    }
}

fn server(row: &SysResUse) -> String {
    server_of_nal_path(&row.nal_path).unwrap_or_default()
}

fn num(props: &[sup_smsprov::scf::EmbeddedProperty], name: &str) -> u32 {
    prop(props, name).map(|p| p.value).unwrap_or(0)
}

fn port(props: &[sup_smsprov::scf::EmbeddedProperty], name: &str) -> u32 {
    num(props, name)
}

fn active_of(p: &Parsed) -> String {
    p.wcm
        .as_ref()
        .and_then(|c| prop(&c.props, DEFAULT_WSUS))
        .map(|p| p.value2.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

impl Provider {
    pub(super) fn commit(
        self: &Arc<Self>,
        site: &str,
        session: Option<&str>,
        epoch: Option<u64>,
    ) -> Result<(), Failure> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let working = session.and_then(|h| {
            lock(&self.sessions)
                .get(h)
                .and_then(|s| s.working.clone())
                .filter(|(s, _)| s == site)
                .map(|(_, scf)| scf)
        });
        let (old, new, seq) = {
            let mut sites = lock(&self.sites);
            let Some(s) = sites.get_mut(site) else {
                return Err(wmi(code::WBEM_E_NOT_FOUND, "Not found"));
            };
            let new = working
                .or_else(|| s.global.clone())
                .unwrap_or_else(|| s.committed.clone());
            let refused = self.emu.has_fault(&s.site_server, Fault::CommitRefused);
            s.seq += 1;
            lock(&self.journal).push(Commit {
                site: site.to_string(),
                seq: s.seq,
                default_wsus: active_of(&parse(&new)),
                epoch,
                at_ms: now_ms,
                accepted: !refused,
            });
            if refused {
                return Err(wmi(
                    code::WBEM_E_FAILED,
                    format!("The site control file of site {site} could not be committed."),
                ));
            }
            let old = std::mem::replace(&mut s.committed, new.clone());
            s.global = None;
            (old, new, s.seq)
        };
        tracing::info!(site, seq, "site control file committed");
        self.react(site, seq, &parse(&old), &parse(&new));
        Ok(())
    }

    fn react(self: &Arc<Self>, site: &str, seq: u64, old: &Parsed, new: &Parsed) {
        let had = |p: &Parsed, s: &str| p.sups.iter().any(|r| server(r) == s);
        for row in &new.sups {
            let name = server(row);
            if had(old, &name) {
                continue;
            }
            self.emu.install(v1::AgentInstallRoleRequest {
                site: site.to_string(),
                server: name.clone(),
                install: Some(v1::InstallRole {
                    site_system: None,
                    role: Some(v1::SoftwareUpdatePoint {
                        server: name.clone(),
                        http_port: port(&row.props, WSUS_IIS_PORT),
                        https_port: port(&row.props, WSUS_IIS_SSL_PORT),
                        ssl: num(&row.props, SSL_WSUS) != 0,
                        ..Default::default()
                    }),
                    mode: 0,
                }),
                op_id: op_id(site, seq, "install"),
            });
        }
        for row in &old.sups {
            let name = server(row);
            if !had(new, &name) {
                self.emu.remove(v1::AgentRemoveRoleRequest {
                    site: site.to_string(),
                    server: name,
                    op_id: op_id(site, seq, "remove"),
                });
            }
        }
        let subscriptions = lock(&self.sites)
            .get_mut(site)
            .is_some_and(|s| std::mem::take(&mut s.subscriptions_dirty));
        if old.wcm != new.wcm || old.sups != new.sups || subscriptions {
            self.configure(site, seq, new);
        }
        let now = new.sync.as_ref().map(sync_now).unwrap_or(0);
        if now != 0 && now != old.sync.as_ref().map(sync_now).unwrap_or(0) {
            self.synchronize(site, seq, format!("syncnow:{site}:{now}"), "manual", "");
        }
    }

    /// One WSyncMgr cycle of `site`; when it succeeds, each child site whose upstream is this
    /// site's active SUP runs its own cycle, as ConfigMgr 2007's child sites do after their
    /// parent.
    fn synchronize(
        self: &Arc<Self>,
        site: &str,
        seq: u64,
        run_id: String,
        trigger: &str,
        parent: &str,
    ) {
        let Some(committed) = lock(&self.sites).get(site).map(|s| s.committed.clone()) else {
            return;
        };
        let active = active_of(&parse(&committed));
        if active.is_empty() {
            return;
        }
        let before = self.emu.get(&active).map(|s| s.syncs).unwrap_or(0);
        self.emu.start_sync(v1::AgentStartSyncRequest {
            site: site.to_string(),
            server: active.clone(),
            epoch: seq,
            run_id: run_id.clone(),
            trigger: trigger.into(),
            full: false,
            parent_site: parent.to_string(),
            ..Default::default()
        });
        let me = self.clone();
        let site = site.to_string();
        tokio::spawn(async move {
            let step = std::time::Duration::from_millis(me.emu.timing.step_ms.max(10));
            let deadline = std::time::Instant::now() + step * 200;
            while std::time::Instant::now() < deadline {
                tokio::time::sleep(step).await;
                if me.emu.get(&active).map(|s| s.syncs).unwrap_or(0) > before {
                    // The child's WSyncMgr finds the parent's notification file only after it
                    // has been replicated to the child site: never at once.
                    tokio::time::sleep(CHILD_NOTIFICATION_DELAY).await;
                    for (child, seq) in me.children_of(&active) {
                        me.synchronize(&child, seq, format!("{run_id}:{child}"), "parent", &site);
                    }
                    return;
                }
            }
        });
    }

    /// The sites whose committed upstream is `server`, with their commit sequence.
    fn children_of(&self, server: &str) -> Vec<(String, u64)> {
        lock(&self.sites)
            .iter()
            .filter(|(_, s)| {
                let p = parse(&s.committed);
                p.wcm.as_ref().is_some_and(|c| {
                    num(&c.props, DEFAULT_USE_PARENT_WSUS) == 1
                        && prop(&c.props, PARENT_WSUS)
                            .is_some_and(|p| p.value2.trim().eq_ignore_ascii_case(server))
                })
            })
            .map(|(code, s)| (code.clone(), s.seq))
            .collect()
    }

    /// WCM applies the committed settings and the site's subscriptions on the active SUP.
    fn configure(self: &Arc<Self>, site: &str, seq: u64, p: &Parsed) {
        let active = active_of(p);
        let Some(wcm) = p.wcm.as_ref().filter(|_| !active.is_empty()) else {
            return;
        };
        let categories: Vec<sms::CategoryRow> = lock(&self.sites)
            .get(site)
            .map(|s| {
                s.categories
                    .iter()
                    .filter_map(sms::category_from_instance)
                    .collect()
            })
            .unwrap_or_default();
        let subscribed = |kind: &str, table: &'static [catalog::Entry]| -> Vec<v1::CatalogEntry> {
            categories
                .iter()
                .filter(|c| c.subscription.subscribed)
                .filter_map(|c| c.subscription.unique_id.strip_prefix(kind))
                .map(|id| v1::CatalogEntry {
                    title: catalog::find(table, id)
                        .map(|e| e.title.to_string())
                        .unwrap_or_default(),
                    id: id.to_string(),
                })
                .collect()
        };
        let languages = |name: &str| -> Vec<v1::CatalogEntry> {
            prop(&wcm.props, name)
                .map(|p| {
                    p.value2
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|id| v1::CatalogEntry {
                            title: catalog::find(catalog::LANGUAGES, id)
                                .map(|e| e.title.to_string())
                                .unwrap_or_default(),
                            id: id.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let update_file_languages = languages(SUPPORTED_UPDATE_LANGUAGES);
        let settings = v1::SoftwareUpdateSettings {
            sync_source: match num(&wcm.props, DEFAULT_USE_PARENT_WSUS) {
                0 => v1::SyncSource::MicrosoftUpdate,
                1 => v1::SyncSource::Upstream,
                _ => v1::SyncSource::None,
            } as i32,
            reporting_events: match num(&wcm.props, CLIENT_REPORTING_LEVEL) {
                0 => v1::ReportingEvents::None,
                1 => v1::ReportingEvents::StatusOnly,
                _ => v1::ReportingEvents::All,
            } as i32,
            schedule: None,
            classifications: subscribed("UpdateClassification:", catalog::CLASSIFICATIONS),
            products: subscribed("Product:", catalog::PRODUCTS),
            languages: update_file_languages.clone(),
            update_file_languages,
            summary_languages: languages(SUPPORTED_TITLE_LANGUAGES),
        };
        let row = p.sups.iter().find(|r| server(r) == active);
        let proxy = row
            .filter(|r| num(&r.props, USE_PROXY) != 0)
            .map(|r| v1::Proxy {
                server: prop(&r.props, PROXY_NAME)
                    .map(|p| p.value2.clone())
                    .unwrap_or_default(),
                port: num(&r.props, PROXY_SERVER_PORT),
                ..Default::default()
            });
        let parent = prop(&wcm.props, PARENT_WSUS)
            .map(|p| p.value2.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let upstream = settings.sync_source == v1::SyncSource::Upstream as i32;
        self.emu.configure(v1::AgentConfigureRequest {
            site: site.to_string(),
            server: active.clone(),
            epoch: seq,
            configure: Some(v1::ConfigureComponent {
                settings: Some(settings),
                upstream_server: if upstream { parent } else { String::new() },
                upstream_port: if upstream {
                    num(&wcm.props, PARENT_WSUS_PORT)
                } else {
                    0
                },
                upstream_ssl: upstream && num(&wcm.props, SSL_TO_PARENT_WSUS) != 0,
                slot: v1::Slot::Intranet as i32,
                role: Some(v1::SoftwareUpdatePoint {
                    server: active,
                    proxy,
                    ..Default::default()
                }),
            }),
            op_id: op_id(site, seq, "configure"),
        });
    }

    /// A subscription changed in the site database: WCM applies it with the committed settings
    /// at the next commit, or shortly after the last of a run of changes.
    pub(super) fn subscriptions_changed(self: &Arc<Self>, site: &str) {
        let first = lock(&self.sites)
            .get_mut(site)
            .is_some_and(|s| !std::mem::replace(&mut s.subscriptions_dirty, true));
        if !first {
            return;
        }
        let me = self.clone();
        let site = site.to_string();
        let wait = std::time::Duration::from_millis(self.emu.timing.step_ms.max(50) * 4);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let pending = lock(&me.sites).get_mut(&site).and_then(|s| {
                std::mem::take(&mut s.subscriptions_dirty).then(|| (s.committed.clone(), s.seq))
            });
            if let Some((committed, seq)) = pending {
                me.configure(&site, seq, &parse(&committed));
            }
        });
    }
}

fn sync_now(c: &Component) -> u32 {
    prop(&c.props, SYNC_NOW).map(|p| p.value).unwrap_or(0)
}
