//! A site to its control file items, and back. The property names, their value slots and their
//! values are those of the ConfigMgr SDK (`SMS_SCI_SysResUse`, `SMS_SCI_Component`,
//! `SMS_UpdateCategoryInstance`), public scripts and the ConfigMgrCBDsc resources, row by row as
//! the reference table gives them; settings with no 2007 property found are not written:
//! - the installation account's password (no WMI way to set it was found);
//! - which server is the active Internet-based SUP (no 2007 property was found);
//! - the NLB virtual addresses (`NLBVIP`/`PublicVIP` are named only in scripts, slot unknown).

use sup_core::catalog::{self, Entry};
use sup_core::model::{ReportingEvents, Site, SyncSource, TopSettings};
use sup_core::spec::{
    RawProxy, RawSchedule, RawSite, RawSiteSystem, RawSoftwareUpdatePoint, RawSoftwareUpdates,
};

use crate::scf::*;

// SMS_SCI_SysResUse "SMS Site System".
pub const SERVER_REMOTE_NAME: &str = "Server Remote Name";
pub const SERVER_REMOTE_PUBLIC_NAME: &str = "Server Remote Public Name";
pub const USE_MACHINE_ACCOUNT: &str = "UseMachineAccount";
pub const USER_NAME: &str = "UserName";
pub const IS_PROTECTED: &str = "IsProtected";
// SMS_SCI_SysResUse "SMS Software Update Point".
pub const WSUS_IIS_PORT: &str = "WSUSIISPort";
pub const WSUS_IIS_SSL_PORT: &str = "WSUSIISSSLPort";
pub const SSL_WSUS: &str = "SSLWSUS";
pub const USE_PROXY: &str = "UseProxy";
pub const PROXY_NAME: &str = "ProxyName";
pub const PROXY_SERVER_PORT: &str = "ProxyServerPort";
/// Inverted: 0 = use credentials, 1 = anonymous (SDK).
pub const ANONYMOUS_PROXY_ACCESS: &str = "AnonymousProxyAccess";
// SMS_WSUS_CONFIGURATION_MANAGER.
pub const DEFAULT_WSUS: &str = "DefaultWSUS";
pub const DEFAULT_WSUS_IIS_PORT: &str = "DefaultWSUSIISPort";
pub const DEFAULT_WSUS_IIS_SSL_PORT: &str = "DefaultWSUSIISSSLPort";
pub const SSL_DEFAULT_WSUS: &str = "SSLDefaultWSUS";
/// 0 Microsoft Update, 1 upstream (the parent site's active SUP), 2 none.
pub const DEFAULT_USE_PARENT_WSUS: &str = "DefaultUseParentWSUS";
pub const PARENT_WSUS: &str = "ParentWSUS";
pub const PARENT_WSUS_PORT: &str = "ParentWSUSPort";
pub const SSL_TO_PARENT_WSUS: &str = "SSLToParentWSUS";
/// 0 none, 1 status only, 2 all.
pub const CLIENT_REPORTING_LEVEL: &str = "ClientReportingLevel";
pub const SUPPORTED_UPDATE_LANGUAGES: &str = "SupportedUpdateLanguages";
pub const SUPPORTED_TITLE_LANGUAGES: &str = "SupportedTitleLanguages";
// SMS_WSUS_SYNC_MANAGER.
/// Value1: the schedule token, empty for no schedule.
pub const SYNC_SCHEDULE: &str = "Sync Schedule";
/// 2007's "Run Synchronization": the request time, Unix seconds (delta only).
pub const SYNC_NOW: &str = "Sync Now";

/// The upstream server of a child site's active SUP: its parent's active SUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentWsus {
    pub server: String,
    pub port: u16,
    pub ssl: bool,
}

/// What the items say besides the site itself.
#[derive(Debug, Clone)]
pub struct Wiring<'a> {
    /// The site server, whose name the component rows carry.
    pub site_server: &'a str,
    /// The active intranet SUP (a server, or an NLB cluster's name): `DefaultWSUS`.
    pub active: Option<&'a str>,
    /// A child site's upstream.
    pub parent_wsus: Option<ParentWsus>,
    /// The schedule, classifications, products and languages: the site's own, or for a child
    /// site those of the top of its hierarchy.
    pub top: &'a TopSettings,
}

fn flag(b: bool) -> u32 {
    u32::from(b)
}

/// A server's "SMS Site System" row.
#[derive(Debug, Clone, Default)]
pub struct SiteSystemView<'a> {
    pub server: &'a str,
    pub internet_fqdn: Option<&'a str>,
    pub computer_account_access: bool,
    pub install_account: Option<&'a str>,
}

/// A proxy of a SUP row.
#[derive(Debug, Clone)]
pub struct ProxyView<'a> {
    pub server: &'a str,
    pub port: u16,
    pub account: Option<&'a str>,
}

/// A server's "SMS Software Update Point" row.
#[derive(Debug, Clone, Default)]
pub struct SupView<'a> {
    pub server: &'a str,
    pub http_port: u16,
    pub https_port: u16,
    pub ssl: bool,
    pub proxy: Option<ProxyView<'a>>,
}

/// What `SMS_WSUS_CONFIGURATION_MANAGER` holds.
#[derive(Debug, Clone)]
pub struct WcmView<'a> {
    /// The active intranet SUP (a server or an NLB cluster's name) and the ports and SSL of its
    /// WSUS web site.
    pub active: Option<(&'a str, u16, u16, bool)>,
    pub sync_source: SyncSource,
    pub parent_wsus: Option<ParentWsus>,
    pub reporting_events: ReportingEvents,
    /// WSUS language codes.
    pub update_file_languages: Vec<&'a str>,
    pub summary_languages: Vec<&'a str>,
}

pub fn site_system_row(site_code: &str, v: &SiteSystemView) -> SysResUse {
    let mut props = vec![
        EmbeddedProperty::value1(SERVER_REMOTE_NAME, v.server),
        EmbeddedProperty::value(USE_MACHINE_ACCOUNT, flag(v.computer_account_access)),
        EmbeddedProperty::value(IS_PROTECTED, 1),
    ];
    if let Some(public) = v.internet_fqdn {
        props.push(EmbeddedProperty::value1(SERVER_REMOTE_PUBLIC_NAME, public));
    }
    if let Some(account) = v.install_account {
        props.push(EmbeddedProperty::value2(USER_NAME, account));
    }
    SysResUse {
        site_code: site_code.into(),
        role: Role::SiteSystem,
        nal_path: nal_path(v.server, site_code),
        nal_type: NAL_TYPE.into(),
        props,
    }
}

pub fn sup_row(site_code: &str, v: &SupView) -> SysResUse {
    let mut props = vec![
        EmbeddedProperty::value(WSUS_IIS_PORT, u32::from(v.http_port)),
        EmbeddedProperty::value(WSUS_IIS_SSL_PORT, u32::from(v.https_port)),
        EmbeddedProperty::value(SSL_WSUS, flag(v.ssl)),
        EmbeddedProperty::value(USE_PROXY, flag(v.proxy.is_some())),
    ];
    if let Some(p) = &v.proxy {
        props.push(EmbeddedProperty::value2(PROXY_NAME, p.server));
        props.push(EmbeddedProperty::value(
            PROXY_SERVER_PORT,
            u32::from(p.port),
        ));
        props.push(EmbeddedProperty::value(
            ANONYMOUS_PROXY_ACCESS,
            flag(p.account.is_none()),
        ));
        if let Some(account) = p.account {
            props.push(EmbeddedProperty::value2(USER_NAME, account));
        }
    }
    SysResUse {
        site_code: site_code.into(),
        role: Role::SoftwareUpdatePoint,
        nal_path: nal_path(v.server, site_code),
        nal_type: NAL_TYPE.into(),
        props,
    }
}

pub fn wcm_component(site_code: &str, site_server: &str, v: &WcmView) -> Component {
    let mut wcm = Component::new(
        site_code,
        ComponentName::WsusConfigurationManager,
        site_server,
    );
    if let Some((server, http, https, ssl)) = v.active {
        wcm.props.extend([
            EmbeddedProperty::value2(DEFAULT_WSUS, server),
            EmbeddedProperty::value(DEFAULT_WSUS_IIS_PORT, u32::from(http)),
            EmbeddedProperty::value(DEFAULT_WSUS_IIS_SSL_PORT, u32::from(https)),
            EmbeddedProperty::value(SSL_DEFAULT_WSUS, flag(ssl)),
        ]);
    }
    wcm.props.push(EmbeddedProperty::value(
        DEFAULT_USE_PARENT_WSUS,
        match v.sync_source {
            SyncSource::MicrosoftUpdate => 0,
            SyncSource::Upstream => 1,
            SyncSource::None => 2,
        },
    ));
    if let Some(parent) = &v.parent_wsus {
        wcm.props.extend([
            EmbeddedProperty::value2(PARENT_WSUS, &parent.server),
            EmbeddedProperty::value(PARENT_WSUS_PORT, u32::from(parent.port)),
            EmbeddedProperty::value(SSL_TO_PARENT_WSUS, flag(parent.ssl)),
        ]);
    }
    wcm.props.push(EmbeddedProperty::value(
        CLIENT_REPORTING_LEVEL,
        match v.reporting_events {
            ReportingEvents::None => 0,
            ReportingEvents::StatusOnly => 1,
            ReportingEvents::All => 2,
        },
    ));
    wcm.props.extend([
        EmbeddedProperty::value2(
            SUPPORTED_UPDATE_LANGUAGES,
            &v.update_file_languages.join(","),
        ),
        EmbeddedProperty::value2(SUPPORTED_TITLE_LANGUAGES, &v.summary_languages.join(",")),
    ]);
    wcm
}

/// `SMS_WSUS_SYNC_MANAGER` with its schedule token (empty: no schedule).
pub fn sync_component(site_code: &str, site_server: &str, schedule_token: &str) -> Component {
    let mut sync = Component::new(site_code, ComponentName::WsusSyncManager, site_server);
    sync.props
        .push(EmbeddedProperty::value1(SYNC_SCHEDULE, schedule_token));
    sync
}

/// The subscribed categories: classifications and products by WSUS GUID, sorted.
pub fn subscriptions<'a>(
    classifications: impl IntoIterator<Item = &'a str>,
    products: impl IntoIterator<Item = &'a str>,
) -> Vec<CategorySubscription> {
    let mut categories: Vec<CategorySubscription> = classifications
        .into_iter()
        .map(|id| CategorySubscription {
            unique_id: format!("UpdateClassification:{id}"),
            subscribed: true,
        })
        .chain(products.into_iter().map(|id| CategorySubscription {
            unique_id: format!("Product:{id}"),
            subscribed: true,
        }))
        .collect();
    categories.sort();
    categories
}

/// The control file items of `site` as the wizard would leave them.
pub fn control_file(site: &Site, w: &Wiring) -> ControlFile {
    let code = site.code.as_str();
    let mut rows = Vec::new();
    for sys in &site.site_systems {
        rows.push(site_system_row(
            code,
            &SiteSystemView {
                server: &sys.server,
                internet_fqdn: sys.internet_fqdn.as_deref(),
                computer_account_access: sys.computer_account_access,
                install_account: sys.install_account.as_deref(),
            },
        ));
    }
    for sup in &site.software_update_points {
        rows.push(sup_row(
            code,
            &SupView {
                server: &sup.server,
                http_port: sup.http_port,
                https_port: sup.https_port,
                ssl: sup.ssl,
                proxy: sup.proxy.as_ref().map(|p| ProxyView {
                    server: &p.server,
                    port: p.port,
                    account: p.account.as_deref(),
                }),
            },
        ));
    }
    let active = w.active.map(|active| {
        let sup = site
            .target(active)
            .and_then(|t| t.members.first().and_then(|m| site.sup(m)));
        match sup {
            Some(s) => (active, s.http_port, s.https_port, s.ssl),
            None => (active, 80, 443, false),
        }
    });
    let ids = |l: &[Entry]| l.iter().map(|e| e.id).collect::<Vec<_>>();
    let wcm = wcm_component(
        code,
        w.site_server,
        &WcmView {
            active,
            sync_source: site.software_updates.sync_source,
            parent_wsus: w.parent_wsus.clone(),
            reporting_events: site.software_updates.reporting_events,
            update_file_languages: ids(&w.top.update_file_languages),
            summary_languages: ids(&w.top.summary_languages),
        },
    );
    let token = sup_core::token::from_schedule(&w.top.schedule).unwrap_or_default();
    let sync = sync_component(code, w.site_server, &token);
    let categories = subscriptions(
        w.top.classifications.iter().map(|e| e.id),
        w.top.products.iter().map(|e| e.id),
    );
    ControlFile {
        site_code: code.into(),
        rows,
        components: vec![wcm, sync],
        categories,
    }
}

/// The site file a control file describes (what `supctl import` prints): site systems, SUPs,
/// the active intranet SUP, the component settings and subscriptions. The site's mode and parent
/// are not in these items, nor are passwords: they are left for the caller.
pub fn site_from_control_file(cf: &ControlFile) -> RawSite {
    let mut site = RawSite {
        code: cf.site_code.clone(),
        ..Default::default()
    };
    let wcm = cf.component(ComponentName::WsusConfigurationManager);
    let active = wcm
        .and_then(|c| prop(&c.props, DEFAULT_WSUS))
        .map(|p| p.value2.to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    site.site_server = wcm
        .and_then(|c| c.item_name.split_once('|'))
        .map(|(_, s)| s.to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    for row in &cf.rows {
        let Some(server) = server_of_nal_path(&row.nal_path) else {
            continue;
        };
        let get = |name: &str| prop(&row.props, name);
        match row.role {
            Role::SiteSystem => site.site_system.push(RawSiteSystem {
                server,
                internet_fqdn: get(SERVER_REMOTE_PUBLIC_NAME)
                    .map(|p| p.value1.clone())
                    .filter(|s| !s.is_empty()),
                computer_account_access: get(USE_MACHINE_ACCOUNT).map(|p| p.value != 0),
                install_account: get(USER_NAME)
                    .map(|p| p.value2.clone())
                    .filter(|s| !s.is_empty()),
                ..Default::default()
            }),
            Role::SoftwareUpdatePoint => {
                let proxy = get(USE_PROXY).filter(|p| p.value != 0).map(|_| RawProxy {
                    server: get(PROXY_NAME).map(|p| p.value2.clone()),
                    port: get(PROXY_SERVER_PORT).map(|p| i64::from(p.value)),
                    account: get(ANONYMOUS_PROXY_ACCESS)
                        .filter(|p| p.value == 0)
                        .and_then(|_| get(USER_NAME))
                        .map(|p| p.value2.clone())
                        .filter(|s| !s.is_empty()),
                    ..Default::default()
                });
                site.software_update_point.push(RawSoftwareUpdatePoint {
                    active: (active.as_deref() == Some(server.as_str()))
                        .then(|| "intranet".to_string()),
                    server,
                    http_port: get(WSUS_IIS_PORT).map(|p| i64::from(p.value)),
                    https_port: get(WSUS_IIS_SSL_PORT).map(|p| i64::from(p.value)),
                    ssl: get(SSL_WSUS).map(|p| p.value != 0),
                    proxy,
                    ..Default::default()
                });
            }
        }
    }
    let mut su = RawSoftwareUpdates::default();
    if let Some(c) = wcm {
        su.sync_source = prop(&c.props, DEFAULT_USE_PARENT_WSUS).map(|p| {
            match p.value {
                0 => "microsoft_update",
                1 => "upstream",
                _ => "none",
            }
            .to_string()
        });
        su.reporting_events = prop(&c.props, CLIENT_REPORTING_LEVEL).map(|p| {
            match p.value {
                0 => "none",
                1 => "status_only",
                _ => "all",
            }
            .to_string()
        });
        let languages = |name: &str| {
            prop(&c.props, name).map(|p| {
                p.value2
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|code| {
                        catalog::find(catalog::LANGUAGES, code)
                            .map(|e| e.title.to_string())
                            .unwrap_or_else(|| code.to_string())
                    })
                    .collect::<Vec<_>>()
            })
        };
        su.update_file_languages = languages(SUPPORTED_UPDATE_LANGUAGES);
        su.summary_languages = languages(SUPPORTED_TITLE_LANGUAGES);
    }
    if let Some(c) = cf.component(ComponentName::WsusSyncManager) {
        su.schedule = prop(&c.props, SYNC_SCHEDULE).map(|p| {
            if p.value1.trim().is_empty() {
                RawSchedule::Text("manual".into())
            } else {
                RawSchedule::Text(p.value1.trim().to_string())
            }
        });
    }
    let subscribed = |prefix: &str, table: &'static [Entry]| -> Vec<String> {
        cf.categories
            .iter()
            .filter(|c| c.subscribed)
            .filter_map(|c| c.unique_id.strip_prefix(prefix))
            .map(|id| {
                catalog::find(table, id)
                    .map(|e| e.title.to_string())
                    .unwrap_or_else(|| id.to_string())
            })
            .collect()
    };
    su.classifications = Some(subscribed(
        "UpdateClassification:",
        catalog::CLASSIFICATIONS,
    ));
    su.products = Some(subscribed("Product:", catalog::PRODUCTS));
    site.software_updates = Some(su);
    site
}

#[cfg(test)]
mod tests;
