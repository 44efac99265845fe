//! The driver's operations: each command an edit of the site control file committed through
//! the site's SMS Provider; the WSUS setup values through `StdRegProv`.

use sup_proto::v1;
use sup_smsprov::map::{
    self, DEFAULT_USE_PARENT_WSUS, ParentWsus, SYNC_NOW, SiteSystemView, WcmView,
};
use sup_smsprov::scf::{ComponentName, EmbeddedProperty, prop};
use sup_smsprov::wmi as sms;
use sup_wsman::instance::class_uri;

use super::session::{Edit, SiteProvider, subscribe};
use super::{
    HKLM, SmsProviderDriver, WSUS_SETUP_KEY, classify, not_found, now_unix, reply, role_row, u16_of,
};
use crate::driver::{DriverError, SiteDriver};

impl SiteDriver for SmsProviderDriver {
    async fn wsus_info(&self, site: &str, server: &str) -> Result<v1::WsusInfo, DriverError> {
        let p = self.site(site)?;
        let client = p.registry_client(server)?;
        let uri = class_uri("root\\default", "StdRegProv");
        let read = |method: &'static str, value: &'static str| {
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                client
                    .invoke(
                        &uri,
                        method,
                        &[
                            ("hDefKey", HKLM),
                            ("sSubKeyName", WSUS_SETUP_KEY),
                            ("sValueName", value),
                        ],
                        &[],
                        &[],
                    )
                    .await
            }
        };
        let url = p.settings.site_system_url(server);
        let port = read("GetDWORDValue", "PortNumber")
            .await
            .map_err(|e| classify(&url, e))?;
        let mut info = v1::WsusInfo {
            server: server.to_string(),
            ..Default::default()
        };
        if port.text("ReturnValue").map(str::trim) != Some("0") {
            return Ok(info);
        }
        info.installed = true;
        info.http_port = port
            .text("uValue")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(80);
        // WSUS setup records the web site's port, not its SSL port: unknown (0) here.
        info.https_port = 0;
        let ssl = read("GetDWORDValue", "UsingSSL")
            .await
            .map_err(|e| classify(&url, e))?;
        info.ssl = ssl.text("ReturnValue").map(str::trim) == Some("0")
            && ssl.text("uValue").map(str::trim) == Some("1");
        let version = read("GetStringValue", "VersionString")
            .await
            .map_err(|e| classify(&url, e))?;
        if version.text("ReturnValue").map(str::trim) == Some("0") {
            info.version = version
                .text("sValue")
                .unwrap_or_default()
                .trim()
                .to_string();
        }
        Ok(info)
    }

    async fn install_role(
        &self,
        req: v1::AgentInstallRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let p = self.site(&req.site)?;
        let site = req.site.to_ascii_uppercase();
        let install = req.install.clone().unwrap_or_default();
        let role = install.role.clone().unwrap_or_default();
        let system = install.site_system.clone();
        let server = req.server.clone();
        let r = {
            let session = p.open(&site).await?;
            let options = &session.options[..];
            let edit: Result<Edit, DriverError> = async {
                let sys = system.as_ref();
                let sys_row = map::site_system_row(
                    &site,
                    &SiteSystemView {
                        server: &server,
                        internet_fqdn: sys
                            .map(|s| s.internet_fqdn.as_str())
                            .filter(|s| !s.is_empty()),
                        computer_account_access: sys
                            .and_then(|s| s.computer_account_access)
                            .unwrap_or(true),
                        install_account: sys
                            .map(|s| s.install_account.as_str())
                            .filter(|s| !s.is_empty()),
                    },
                );
                p.upsert_row(&site, &sys_row, options).await?;
                let mut role = role.clone();
                role.server = server.clone();
                p.upsert_row(&site, &role_row(&site, &role), options)
                    .await?;
                Ok(Edit::Commit(format!(
                    "SMS Software Update Point on {server} committed to site {site}'s control file"
                )))
            }
            .await;
            p.close(&site, session, edit).await
        }?;
        if r.accepted {
            self.remember(&site, |m| {
                m.installs
                    .insert(req.server.to_ascii_lowercase(), req.clone());
            });
        }
        Ok(r)
    }

    async fn remove_role(
        &self,
        req: v1::AgentRemoveRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let p = self.site(&req.site)?;
        let site = req.site.to_ascii_uppercase();
        let server = req.server.clone();
        let r = {
            let session = p.open(&site).await?;
            let options = &session.options[..];
            let edit: Result<Edit, DriverError> = async {
                let row = role_row(&site, &v1::SoftwareUpdatePoint { server: server.clone(), ..Default::default() });
                match p.client.delete(&SiteProvider::uri(&site, sms::SYS_RES_USE), &sms::row_selectors(&row), options).await {
                    Ok(()) => Ok(Edit::Commit(format!("SMS Software Update Point on {server} deleted from site {site}'s control file"))),
                    Err(e) if not_found(&e) => Ok(Edit::Drop(reply(true, format!("{server} holds no SUP row in site {site}")))),
                    Err(e) => Err(p.err(e)),
                }
            }
 .await;
            p.close(&site, session, edit).await
        }?;
        self.remember(&site, |m| {
            m.installs.remove(&req.server.to_ascii_lowercase());
        });
        Ok(r)
    }

    async fn configure(
        &self,
        req: v1::AgentConfigureRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let p = self.site(&req.site)?;
        let site = req.site.to_ascii_uppercase();
        let c = req.configure.clone().unwrap_or_default();
        if c.slot == v1::Slot::Internet as i32 {
            // No ConfigMgr 2007 property for the active Internet-based SUP was found: its row's
            // settings are committed, nothing names it active.
            let role = c.role.clone().unwrap_or_default();
            let server = req.server.clone();
            return {
                let session = p.open(&site).await?;
                let options = &session.options[..];
                let edit: Result<Edit, DriverError> = async {
                    let mut role = role.clone();
                    role.server = server.clone();
                    p.upsert_row(&site, &role_row(&site, &role), options)
                        .await?;
                    Ok(Edit::Commit(format!(
                        "Internet-based SUP {server}'s settings committed"
                    )))
                }
                .await;
                p.close(&site, session, edit).await
            };
        }
        let epoch = req.epoch;
        let server = req.server.clone();
        let fence = self;
        let r = {
            let session = p.open(&site).await?;
            let options = &session.options[..];
            let edit: Result<Edit, DriverError> = async {
                    let settings = c.settings.clone().unwrap_or_default();
                    let role = c.role.clone().unwrap_or_default();
                    let sync_source = match v1::SyncSource::try_from(settings.sync_source) {
                        Ok(v1::SyncSource::Upstream) => sup_core::model::SyncSource::Upstream,
                        Ok(v1::SyncSource::None) => sup_core::model::SyncSource::None,
                        _ => sup_core::model::SyncSource::MicrosoftUpdate,
                    };
                    let ids = |l: &[v1::CatalogEntry]| l.iter().map(|e| if e.id.is_empty() { e.title.clone() } else { e.id.clone() }).collect::<Vec<_>>();
                    let update_langs = ids(if settings.update_file_languages.is_empty() { &settings.languages } else { &settings.update_file_languages });
                    let summary_langs = ids(&settings.summary_languages);
                    let wcm_props = map::wcm_component(
                        &site,
                        "",
                        &WcmView {
                            active: Some((&server, u16_of(role.http_port, 80), u16_of(role.https_port, 443), role.ssl)),
                            sync_source,
                            parent_wsus: (!c.upstream_server.is_empty()).then(|| ParentWsus {
                                server: c.upstream_server.clone(),
                                port: u16_of(c.upstream_port, 80),
                                ssl: c.upstream_ssl,
                            }),
                            reporting_events: match v1::ReportingEvents::try_from(settings.reporting_events) {
                                Ok(v1::ReportingEvents::None) => sup_core::model::ReportingEvents::None,
                                Ok(v1::ReportingEvents::StatusOnly) => sup_core::model::ReportingEvents::StatusOnly,
                                _ => sup_core::model::ReportingEvents::All,
                            },
                            update_file_languages: update_langs.iter().map(String::as_str).collect(),
                            summary_languages: summary_langs.iter().map(String::as_str).collect(),
                        },
                    )
                    .props;
                    // A child site inherits the schedule, categories and languages of the top of
                    // its hierarchy (ConfigMgr 2007 greys them out there): only a site that does
                    // not synchronize from an upstream server writes them.
                    let top = sync_source != sup_core::model::SyncSource::Upstream;
                    let wcm_props: Vec<EmbeddedProperty> = wcm_props
                        .into_iter()
                        .filter(|p| top || (p.name != map::SUPPORTED_UPDATE_LANGUAGES && p.name != map::SUPPORTED_TITLE_LANGUAGES))
                        .collect();
                    let wcm = p.component(&site, ComponentName::WsusConfigurationManager, options).await?;
                    p.put_component(&site, wcm, &wcm_props, options).await?;
                    if !role.server.is_empty() {
                        let mut role = role.clone();
                        role.server = server.clone();
                        p.upsert_row(&site, &role_row(&site, &role), options).await?;
                    }
                    if top {
                        let token = settings.schedule.as_ref().map(|s| s.token.clone()).unwrap_or_default();
                        let sync = p.component(&site, ComponentName::WsusSyncManager, options).await?;
                        p.put_component(&site, sync, &[EmbeddedProperty::value1(map::SYNC_SCHEDULE, &token)], options).await?;
                        subscribe(p, &site, &ids(&settings.classifications), &ids(&settings.products), options).await?;
                    }
                    if let Err((now, _)) = fence.current(&site, epoch).await? {
                        return Ok(Edit::Drop(reply(false, format!("stale epoch {epoch}: the active SUP of {site} is at epoch {now}; nothing committed"))));
                    }
                    Ok(Edit::CommitAt(format!("DefaultWSUS = {server} committed at epoch {epoch}"), epoch))
                }
 .await;
            p.close(&site, session, edit).await
        }?;
        if r.accepted
            && let Err((now, holders)) = self.current(&req.site.to_ascii_uppercase(), epoch).await?
            && let Some(holder) = holders.first().cloned()
        {
            tracing::warn!(site = %req.site, epoch, now, holder, "a newer epoch moved the slot during the commit; pointing the control file back at its holder");
            self.repoint(p, &req.site.to_ascii_uppercase(), holder, now)
                .await?;
            return Ok(reply(
                false,
                format!("superseded by epoch {now} during the commit"),
            ));
        }
        if r.accepted {
            self.remember(&site, |m| {
                m.configures.insert(c.slot, req.clone());
            });
        }
        Ok(r)
    }

    async fn start_sync(
        &self,
        req: v1::AgentStartSyncRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let p = self.site(&req.site)?;
        let site = req.site.to_ascii_uppercase();
        let epoch = req.epoch;
        let trigger = req.trigger.clone();
        let fence = self;
        {
            let session = p.open(&site).await?;
            let options = &session.options[..];
            let edit: Result<Edit, DriverError> = async {
                let wcm = p.component(&site, ComponentName::WsusConfigurationManager, options).await?;
                let child = sms::component_from_instance(&wcm)
                    .and_then(|c| prop(&c.props, DEFAULT_USE_PARENT_WSUS).map(|p| p.value == 1))
                    .unwrap_or(false);
                if child {
                    // 2007 offers no manual synchronization on a child site: it synchronizes
                    // after its parent by itself.
                    return Ok(Edit::Drop(if trigger == "parent" {
                        reply(true, format!("site {site} synchronizes after its parent by itself"))
                    } else {
                        reply(false, format!("site {site} is a child site: ConfigMgr 2007 synchronizes it after its parent, never on request"))
                    }));
                }
                let sync = p.component(&site, ComponentName::WsusSyncManager, options).await?;
                p.put_component(&site, sync, &[EmbeddedProperty::value(SYNC_NOW, now_unix())], options).await?;
                if let Err((now, _)) = fence.current(&site, epoch).await? {
                    return Ok(Edit::Drop(reply(false, format!("stale epoch {epoch}: the active SUP of {site} is at epoch {now}"))));
                }
                Ok(Edit::CommitAt("Sync Now committed (a delta synchronization, as ConfigMgr 2007's Run Synchronization)".into(), epoch))
            }
 .await;
            p.close(&site, session, edit).await
        }
    }
}
