//! The emulated site systems: their WSUS, SUP role, component configuration and injected faults,
//! and the agent's operations, which write the logs ConfigMgr writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sup_proto::v1;

use crate::catalog;
use crate::logs::{self, Logs};

/// The faults the control API injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Connections are dropped without an answer.
    Down,
    /// Every answer is delayed.
    Slow,
    /// IIS answers with an HTML error page (503).
    HtmlError,
    /// The WSUS database is unreachable: health lines fail, SOAP calls that need it fault.
    DbDown,
    /// WSUS is not installed: setup fails as it does, the WSUS web site is gone.
    NoWsus,
    /// Role setup fails.
    InstallFails,
    /// Synchronization fails.
    SyncFails,
    /// The SMS Provider on this host refuses every request with "Access is denied".
    ProviderAccessDenied,
    /// Every WMI operation of the SMS Provider on this host times out.
    ProviderTimeout,
    /// The SMS Provider on this site server refuses to commit the site control file.
    CommitRefused,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Down,
        Fault::Slow,
        Fault::HtmlError,
        Fault::DbDown,
        Fault::NoWsus,
        Fault::InstallFails,
        Fault::SyncFails,
        Fault::ProviderAccessDenied,
        Fault::ProviderTimeout,
        Fault::CommitRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Down => "down",
            Fault::Slow => "slow",
            Fault::HtmlError => "html-error",
            Fault::DbDown => "db-down",
            Fault::NoWsus => "no-wsus",
            Fault::InstallFails => "install-fails",
            Fault::SyncFails => "sync-fails",
            Fault::ProviderAccessDenied => "provider-access-denied",
            Fault::ProviderTimeout => "provider-timeout",
            Fault::CommitRefused => "commit-refused",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// One emulated site system.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub name: String,
    pub http_port: u16,
    pub https_port: u16,
    /// The WSUS web site requires SSL on its five web-service roots (`wsusutil configuressl`).
    pub ssl: bool,
    /// Set up as a site file or `--server` declared it; otherwise learned, and set up the way
    /// the first role installed on it says.
    pub declared: bool,
    /// WSUS's `VersionString` (HKLM\SOFTWARE\Microsoft\Update Services\Server\Setup).
    pub wsus_version: String,
    /// Minutes, UTC = local + bias.
    pub bias: i32,
    pub site: String,
    pub role_installed: bool,
    pub installing: bool,
    pub faults: BTreeSet<Fault>,
    pub configured_epoch: u64,
    pub subscription: Option<Subscription>,
    pub upstream: String,
    pub syncs: u32,
    /// Setups actually run (a retried request with the same op id does not count).
    pub installs: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Subscription {
    pub classifications: Vec<String>,
    pub products: Vec<String>,
    pub languages: Vec<String>,
    pub sync_source: i32,
    pub reporting_events: i32,
    pub proxy: Option<(String, u32)>,
}

/// One fenced command as the agent decided it.
#[derive(Debug, Clone, Serialize)]
pub struct Fenced {
    pub site: String,
    /// The slot whose epoch fences the command (`intranet` or `internet`).
    pub slot: String,
    pub server: String,
    /// `configure` or `start_sync`.
    pub kind: String,
    pub epoch: u64,
    pub accepted: bool,
}

/// How fast the emulated world moves.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Timing {
    /// Between two steps of setup, configuration or synchronization.
    pub step_ms: u64,
    /// How often WSUSCtrl and WCM write their health lines.
    pub health_interval_ms: u64,
    /// The delay of the `slow` fault.
    pub slow_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            step_ms: 50,
            health_interval_ms: 5_000,
            slow_ms: 3_000,
        }
    }
}

/// Defaults for servers the emulator learns of from an agent call or a request.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerDefaults {
    pub http_port: u16,
    pub https_port: u16,
    pub bias: i32,
}

impl Default for ServerDefaults {
    fn default() -> Self {
        Self {
            http_port: 8530,
            https_port: 8531,
            bias: 0,
        }
    }
}

pub struct Emulator {
    servers: Mutex<BTreeMap<String, Server>>,
    pub logs: Logs,
    pub timing: Timing,
    defaults: ServerDefaults,
    /// Site code → its site server, whose folder gets WCM.log and wsyncmgr.log.
    site_servers: BTreeMap<String, String>,
    /// Replies by op id, so a retried agent call acts once.
    ops: Mutex<HashMap<String, v1::AgentReply>>,
    /// The highest epoch seen per site: a configuration under an older epoch is refused.
    epochs: Mutex<HashMap<String, u64>>,
    /// Every fenced command in the order the agent decided it: its own record, which a checker
    /// can hold against the event history.
    journal: Mutex<Vec<Fenced>>,
    /// When true, servers not configured up front are refused on HTTP.
    pub strict_hosts: bool,
}

/// WSUS 3.0 SP2's `VersionString`, as public code that reads it records it.
pub const WSUS_VERSION: &str = "3.2.7600.226";

/// A server set up before any agent call: a site file's or `--server`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServer {
    pub name: String,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    pub ssl: bool,
    pub bias: Option<i32>,
}

fn reply(accepted: bool, detail: impl Into<String>) -> v1::AgentReply {
    v1::AgentReply {
        accepted,
        detail: detail.into(),
        duplicate: false,
    }
}

impl Emulator {
    pub fn new(
        logs: Logs,
        timing: Timing,
        defaults: ServerDefaults,
        site_servers: BTreeMap<String, String>,
    ) -> Self {
        Self {
            servers: Mutex::new(BTreeMap::new()),
            logs,
            timing,
            defaults,
            site_servers,
            ops: Mutex::new(HashMap::new()),
            epochs: Mutex::new(HashMap::new()),
            journal: Mutex::new(Vec::new()),
            strict_hosts: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a server (idempotent).
    pub fn add_server(
        &self,
        name: &str,
        http_port: Option<u16>,
        https_port: Option<u16>,
        bias: Option<i32>,
    ) {
        let name = name.to_ascii_lowercase();
        let d = &self.defaults;
        self.lock().entry(name.clone()).or_insert_with(|| Server {
            name,
            http_port: http_port.unwrap_or(d.http_port),
            https_port: https_port.unwrap_or(d.https_port),
            ssl: false,
            declared: false,
            wsus_version: WSUS_VERSION.into(),
            bias: bias.unwrap_or(d.bias),
            site: String::new(),
            role_installed: false,
            installing: false,
            faults: BTreeSet::new(),
            configured_epoch: 0,
            subscription: None,
            upstream: String::new(),
            syncs: 0,
            installs: 0,
        });
    }

    /// Sets a server up as declared: its WSUS web site on these ports, with or without SSL.
    pub fn declare_server(&self, k: &KnownServer) {
        self.add_server(&k.name, k.http_port, k.https_port, k.bias);
        let d = &self.defaults;
        let mut g = self.lock();
        if let Some(s) = g.get_mut(&k.name.to_ascii_lowercase()) {
            s.http_port = k.http_port.unwrap_or(d.http_port);
            s.https_port = k.https_port.unwrap_or(d.https_port);
            s.ssl = k.ssl;
            s.declared = true;
        }
    }

    /// Replaces a server's WSUS version (an older WSUS fails the SUP's prerequisite check).
    pub fn set_wsus_version(&self, name: &str, version: &str) {
        self.update(name, |s| s.wsus_version = version.to_string());
        tracing::info!(server = name, version, "WSUS version set");
    }

    pub fn get(&self, name: &str) -> Option<Server> {
        self.lock().get(&name.to_ascii_lowercase()).cloned()
    }

    pub fn servers(&self) -> Vec<Server> {
        self.lock().values().cloned().collect()
    }

    fn update<T>(&self, name: &str, f: impl FnOnce(&mut Server) -> T) -> T {
        self.add_server(name, None, None, None);
        let mut g = self.lock();
        let s = g.get_mut(&name.to_ascii_lowercase()).expect("added above");
        f(s)
    }

    pub fn has_fault(&self, name: &str, fault: Fault) -> bool {
        self.get(name).is_some_and(|s| s.faults.contains(&fault))
    }

    pub fn set_fault(&self, name: &str, fault: Fault) {
        self.update(name, |s| s.faults.insert(fault));
        tracing::info!(server = name, fault = fault.as_str(), "fault injected");
    }

    pub fn clear_faults(&self, name: &str) {
        self.update(name, |s| s.faults.clear());
        tracing::info!(server = name, "faults cleared");
    }

    fn remember(&self, op_key: String, r: v1::AgentReply) -> v1::AgentReply {
        if !op_key.ends_with(':') {
            self.ops
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(op_key, r.clone());
        }
        r
    }

    fn replay(&self, op_key: &str) -> Option<v1::AgentReply> {
        if op_key.ends_with(':') {
            return None;
        }
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(op_key)
            .cloned()
            .map(|mut r| {
                r.duplicate = true;
                r
            })
    }

    /// The folder whose WCM.log and wsyncmgr.log describe `server` of `site`.
    fn site_server_of(&self, site: &str, server: &str) -> String {
        self.site_servers
            .get(site)
            .cloned()
            .unwrap_or_else(|| server.to_string())
    }

    pub fn wsus_info(&self, name: &str) -> v1::WsusInfo {
        self.add_server(name, None, None, None);
        let s = self.get(name).expect("added");
        let installed = !s.faults.contains(&Fault::NoWsus);
        v1::WsusInfo {
            server: s.name.clone(),
            installed,
            version: if installed {
                s.wsus_version.clone()
            } else {
                String::new()
            },
            http_port: u32::from(s.http_port),
            https_port: u32::from(s.https_port),
            ssl: s.ssl,
        }
    }

    async fn step(&self) {
        tokio::time::sleep(Duration::from_millis(self.timing.step_ms)).await;
    }

    /// Installs the SUP role: SUPSetup.log over a few steps, then the first health lines.
    pub fn install(self: &Arc<Self>, req: v1::AgentInstallRoleRequest) -> v1::AgentReply {
        let key = format!("install:{}:{}", req.server, req.op_id);
        if let Some(r) = self.replay(&key) {
            return r;
        }
        let server = req.server.to_ascii_lowercase();
        let role = req.install.as_ref().and_then(|i| i.role.clone());
        let started = self.update(&server, |s| {
            s.site = req.site.clone();
            // A learned server stands in for one set up as the role says.
            if let Some(r) = role.as_ref().filter(|_| !s.declared) {
                s.ssl = r.ssl;
                if r.http_port != 0 {
                    s.http_port = u16::try_from(r.http_port).unwrap_or(s.http_port);
                }
                if r.https_port != 0 {
                    s.https_port = u16::try_from(r.https_port).unwrap_or(s.https_port);
                }
            }
            if s.installing {
                return false;
            }
            s.installing = true;
            s.installs += 1;
            true
        });
        if !started {
            return self.remember(key, reply(true, "setup is already running"));
        }
        let me = self.clone();
        let site = req.site.clone();
        tokio::spawn(async move { me.run_setup(&site, &server).await });
        self.remember(key, reply(true, "SMSWSUS setup started"))
    }

    async fn run_setup(&self, site: &str, server: &str) {
        let bias = self.get(server).map(|s| s.bias).unwrap_or(0);
        let site_server = self.site_server_of(site, server);
        let setup = |lines: &[&str]| {
            self.logs.rolesetup(
                server,
                bias,
                &lines.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            )
        };
        setup(&[
            "====================================================================",
            "SMSWSUS Setup Started....",
            &format!(
                "Parameters: C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\rolesetup.exe /install /siteserver:{} SMSWSUS 0",
                site_server
                    .split('.')
                    .next()
                    .unwrap_or(&site_server)
                    .to_ascii_uppercase()
            ),
            "Installing Pre Reqs for SMSWSUS",
            "   ======== Installing Pre Reqs for Role SMSWSUS ========",
            "Found 0 Pre Reqs for Role SMSWSUS",
            "   ======== Completed Installation of Pre Reqs for Role SMSWSUS ========",
            "Installing the SMSWSUS",
        ]);
        self.step().await;
        setup(&[
            "Checking for supported version of WSUS (min WSUS 3.0 SP1)",
            "Checking runtime v2.0.50727...",
        ]);
        self.step().await;
        let version = self
            .get(server)
            .map(|s| s.wsus_version)
            .unwrap_or_else(|| WSUS_VERSION.into());
        if self.has_fault(server, Fault::NoWsus) || !sup_core::wsus_version::supported(&version) {
            setup(&[
                "Did not find supported version of assembly Microsoft.UpdateServices.Administration.",
                "Supported WSUS version not found",
                "~RoleSetup().",
            ]);
            self.update(server, |s| s.installing = false);
            return;
        }
        setup(&[
            &format!(
                "Found supported assembly Microsoft.UpdateServices.Administration version 3.0.0.0, file version {version}"
            ),
            "Supported WSUS version found",
            &format!("Supported WSUS Server version ({version}) is installed."),
            "CTool::RegisterManagedBinary: run command line: \"C:\\WINDOWS\\Microsoft.NET\\Framework\\v2.0.50727\\RegAsm.exe\" \"C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\wsusmsp.dll\"",
        ]);
        self.step().await;
        if self.has_fault(server, Fault::InstallFails) {
            setup(&[
                "CTool::RegisterManagedBinary: Failed to register C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\wsusmsp.dll, error 0x80070005",
                "~RoleSetup().",
            ]);
            self.update(server, |s| s.installing = false);
            return;
        }
        setup(&[
            "CTool::RegisterManagedBinary: Registered C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\wsusmsp.dll successfully",
            "Registered DLL C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\wsusmsp.dll",
            "Installation was successful.",
            "~RoleSetup().",
        ]);
        self.update(server, |s| {
            s.installing = false;
            s.role_installed = true;
        });
        self.step().await;
        self.write_health(site, server);
    }

    /// WSUSCtrl's check on the SUP and WCM's on the site server: the two lines the procedure
    /// waits for, or their failures.
    pub fn write_health(&self, site: &str, server: &str) {
        let Some(s) = self.get(server) else { return };
        if !s.role_installed {
            return;
        }
        let site_server = self.site_server_of(site, server);
        let ws = |m: Vec<String>| {
            self.logs.sms(
                server,
                logs::WSUSCTRL,
                logs::WSUSCTRL_COMPONENT,
                s.bias,
                3452,
                &m,
            )
        };
        let wcm = |m: Vec<String>| {
            self.logs.sms(
                &site_server,
                logs::WCM,
                logs::WCM_COMPONENT,
                s.bias,
                4120,
                &m,
            )
        };
        let connect = wcm_connection(&s);
        if s.faults.contains(&Fault::Down) || s.faults.contains(&Fault::NoWsus) {
            wcm(vec![
                format!("Attempting connection to WSUS {connect}"),
                "System.Net.WebException: Unable to connect to the remote server~~   at Microsoft.UpdateServices.Administration.AdminProxy.CreateUpdateServer(Object[] args)".into(),
                format!("Remote configuration failed on WSUS Server {}.", s.name),
            ]);
            return;
        }
        if s.faults.contains(&Fault::DbDown) || s.faults.contains(&Fault::HtmlError) {
            let lines = vec![
                "Attempting connection to local WSUS server".to_string(),
                "Successfully connected to local WSUS server".to_string(),
                format!(
                    "There are unhealthy WSUS Server components on WSUS Server {}: Database, CatalogSyncAgent",
                    s.name
                ),
                format!(
                    "Failed to check database connection on WSUS server {}. Error: System.Data.SqlClient.SqlException: SQL Server does not exist or access denied.",
                    s.name
                ),
                "Waiting for changes for 59 minutes".to_string(),
            ];
            ws(lines.clone());
            wcm(lines[2..4].to_vec());
            return;
        }
        ws(vec![
            "Attempting connection to local WSUS server".into(),
            "Successfully connected to local WSUS server".into(),
            format!(
                "There are no unhealthy WSUS Server components on WSUS Server {}",
                s.name
            ),
            format!(
                "Successfully checked database connection on WSUS server {}",
                s.name
            ),
            "Waiting for changes for 59 minutes".into(),
        ]);
        wcm(vec![
            format!("Attempting connection to WSUS {connect}"),
            format!("Successfully connected to {connect}"),
            format!(
                "There are no unhealthy WSUS Server components on WSUS Server {}",
                s.name
            ),
            format!(
                "Successfully checked database connection on WSUS server {}",
                s.name
            ),
        ]);
    }

    pub fn remove(&self, req: v1::AgentRemoveRoleRequest) -> v1::AgentReply {
        let key = format!("remove:{}:{}", req.server, req.op_id);
        if let Some(r) = self.replay(&key) {
            return r;
        }
        let bias = self.get(&req.server).map(|s| s.bias).unwrap_or(0);
        self.update(&req.server, |s| {
            s.role_installed = false;
            s.subscription = None;
        });
        self.logs.rolesetup(
            &req.server,
            bias,
            &[
                "====================================================================".into(),
                "SMSWSUS Deinstall Started....".into(),
                "Parameters: C:\\Program Files\\Microsoft Configuration Manager\\bin\\i386\\rolesetup.exe /deinstall SMSWSUS 0".into(),
                "Deinstalling the SMSWSUS".into(),
                "Deinstallation was successful.".into(),
                "~RoleSetup().".into(),
            ],
        );
        self.remember(key, reply(true, "SMSWSUS removed"))
    }

    /// Refuses work under an epoch older than one already seen for the site's slot (fencing),
    /// and journals the decision. Each slot has its own epochs: they are revisions of two keys.
    fn fence(
        &self,
        site: &str,
        slot: &str,
        server: &str,
        kind: &str,
        epoch: u64,
    ) -> Result<(), v1::AgentReply> {
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let seen = epochs.entry(format!("{site}/{slot}")).or_insert(0);
        let accepted = epoch >= *seen;
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fenced {
                site: site.to_string(),
                slot: slot.to_string(),
                server: server.to_ascii_lowercase(),
                kind: kind.to_string(),
                epoch,
                accepted,
            });
        if !accepted {
            return Err(reply(
                false,
                format!("stale epoch {epoch}: the site's active SUP is at epoch {seen}"),
            ));
        }
        *seen = epoch;
        Ok(())
    }

    /// The fenced commands so far, in decision order.
    pub fn journal(&self) -> Vec<Fenced> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn configure(self: &Arc<Self>, req: v1::AgentConfigureRequest) -> v1::AgentReply {
        let key = format!("configure:{}:{}", req.server, req.op_id);
        if let Some(r) = self.replay(&key) {
            return r;
        }
        let cfg = req.configure.clone().unwrap_or_default();
        let slot = if cfg.slot == v1::Slot::Internet as i32 {
            "internet"
        } else {
            "intranet"
        };
        if let Err(r) = self.fence(&req.site, slot, &req.server, "configure", req.epoch) {
            return r;
        }
        let settings = cfg.settings.clone().unwrap_or_default();
        let ids = |list: &[v1::CatalogEntry]| {
            list.iter()
                .map(|e| {
                    if e.id.is_empty() {
                        e.title.clone()
                    } else {
                        e.id.clone()
                    }
                })
                .collect::<Vec<_>>()
        };
        let sub = Subscription {
            classifications: ids(&settings.classifications),
            products: ids(&settings.products),
            languages: ids(&settings.languages),
            sync_source: settings.sync_source,
            reporting_events: settings.reporting_events,
            proxy: cfg
                .role
                .as_ref()
                .and_then(|r| r.proxy.as_ref())
                .map(|p| (p.server.clone(), p.port)),
        };
        let target = req.server.to_ascii_lowercase();
        self.update(&target, |s| {
            s.site = req.site.clone();
            s.configured_epoch = req.epoch;
            s.subscription = Some(sub.clone());
            s.upstream = cfg.upstream_server.clone();
        });
        let me = self.clone();
        let site = req.site.clone();
        tokio::spawn(async move { me.write_configuration(&site, &target, &cfg, &sub).await });
        self.remember(
            key,
            reply(
                true,
                format!("configuration accepted at epoch {}", req.epoch),
            ),
        )
    }

    async fn write_configuration(
        &self,
        site: &str,
        server: &str,
        cfg: &v1::ConfigureComponent,
        sub: &Subscription,
    ) {
        let Some(me) = self.get(server) else { return };
        let bias = me.bias;
        let connect = wcm_connection(&me);
        let site_server = self.site_server_of(site, server);
        let wcm = |m: Vec<String>| {
            self.logs
                .sms(&site_server, logs::WCM, logs::WCM_COMPONENT, bias, 4120, &m)
        };
        wcm(vec![
            "File notification triggered WCM Inbox.".into(),
            "Setting new configuration state to 1 (WSUS_CONFIG_PENDING)".into(),
            format!("Attempting connection to WSUS {connect}"),
            format!("Successfully connected to {connect}"),
            "Verify Upstream Server settings on the Active WSUS Server".into(),
        ]);
        self.step().await;
        let no_sync = cfg
            .settings
            .as_ref()
            .is_some_and(|s| s.sync_source == v1::SyncSource::None as i32);
        // With "Do not synchronize" WCM has no upstream to set; no public source shows what it
        // logs then, so it logs nothing about one.
        let upstream = if no_sync {
            None
        } else if cfg.upstream_server.is_empty() {
            Some("No changes - WSUS Server settings are correctly configured and Upstream Server is set to Microsoft Update".to_string())
        } else {
            Some(format!(
                "Updated WSUS Server settings: Upstream Server is set to {}, port {}",
                cfg.upstream_server, cfg.upstream_port
            ))
        };
        let mut categories =
            String::from("Subscribed Update Categories <?xml version=\"1.0\" ?>~~<Categories>~~");
        for (kind, list) in [
            ("Product", &sub.products),
            ("UpdateClassification", &sub.classifications),
        ] {
            for id in list.iter() {
                categories.push_str(&format!(
                    " <Category Id=\"{kind}:{id}\"><![CDATA[{id}]]></Category>~~"
                ));
            }
        }
        categories.push_str("</Categories>");
        wcm(upstream
            .into_iter()
            .chain([
            categories,
            "Configuration successful. Will wait for 1 minute for any subscription or proxy changes".into(),
            "Setting new configuration state to 2 (WSUS_CONFIG_SUCCESS)".into(),
        ])
            .collect());
        if let Some((proxy, port)) = &sub.proxy {
            self.logs.sms(
                server,
                logs::WSUSCTRL,
                logs::WSUSCTRL_COMPONENT,
                bias,
                3452,
                &[format!("No changes - local WSUS Server Proxy settings are correctly configured as Proxy Name {proxy} and Proxy Port {port}")],
            );
        }
    }

    pub fn start_sync(self: &Arc<Self>, req: v1::AgentStartSyncRequest) -> v1::AgentReply {
        let key = format!("sync:{}:{}", req.server, req.run_id);
        if let Some(r) = self.replay(&key) {
            return r;
        }
        if let Err(r) = self.fence(&req.site, "intranet", &req.server, "start_sync", req.epoch) {
            return r;
        }
        let me = self.clone();
        tokio::spawn(async move { me.run_sync(&req).await });
        self.remember(key, reply(true, "synchronization requested"))
    }

    /// One WSyncMgr cycle on the site server: the active SUP's WSUS from its upstream (unless
    /// the site does not synchronize), the site database from that WSUS, then the active
    /// Internet-based SUP's WSUS from the active SUP's.
    async fn run_sync(&self, req: &v1::AgentStartSyncRequest) {
        let site = req.site.as_str();
        let server = req.server.to_ascii_lowercase();
        let s = self.get(&server);
        let bias = s.as_ref().map(|s| s.bias).unwrap_or(0);
        let site_server = self.site_server_of(site, &server);
        let sync = |m: Vec<String>| {
            self.logs.sms(
                &site_server,
                logs::WSYNCMGR,
                logs::WSYNCMGR_COMPONENT,
                bias,
                3404,
                &m,
            )
        };
        let mut lines = wakeup_lines(&req.trigger, &req.parent_site);
        lines.push(format!("Found active SUP {server} from SCF File."));
        lines.push(logs::statmsg(6701, 'I', &site_server, site));
        let sub = s
            .as_ref()
            .and_then(|s| s.subscription.clone())
            .unwrap_or_default();
        // "Do not synchronize from Microsoft Update or upstream data source": WSUS gets its
        // metadata by export and import, and the cycle only reads it into the site database.
        let from_upstream = sub.sync_source != v1::SyncSource::None as i32;
        if from_upstream {
            lines.push(format!("Synchronizing WSUS server {server} ..."));
            lines.push("sync: Starting WSUS synchronization".into());
        }
        sync(lines);
        self.step().await;
        let upstream = s.as_ref().map(|s| s.upstream.clone()).unwrap_or_default();
        if from_upstream && self.sync_fails(&server) {
            sync(failure_lines(&upstream, &site_server, site));
            return;
        }
        let total = catalog::selected(&sub.classifications, &sub.products, &sub.languages);
        if from_upstream {
            sync(vec![
                "sync: WSUS synchronizing categories".into(),
                format!(
                    "sync: WSUS synchronizing updates, processed {} out of {total} items ({}%)",
                    total / 2,
                    if total == 0 { 100 } else { 50 }
                ),
            ]);
            self.step().await;
            sync(vec![
                format!(
                    "sync: WSUS synchronizing updates, processed {total} out of {total} items (100%)"
                ),
                format!("Done synchronizing WSUS Server {server}"),
            ]);
        }
        sync(vec![
            format!("Synchronizing SMS database with WSUS server {server} ..."),
            format!(
                "sync: SMS synchronizing updates, processed {total} out of {total} items (100%)"
            ),
            format!("Done synchronizing SMS with WSUS Server {server}"),
        ]);
        self.update(&server, |s| s.syncs += 1);
        // The Internet-based SUP's WSUS takes its metadata from the active SUP's, after it, in
        // the same cycle. The 2007 documentation names no log line for this step; these are the
        // lines later versions write for their downstream WSUS servers.
        let internet = req.internet_server.to_ascii_lowercase();
        if !internet.is_empty() {
            self.step().await;
            sync(vec![
                "Synchronizing replica WSUS servers".into(),
                "sync: Starting Replica WSUS synchronization".into(),
                format!("Synchronizing WSUS server {internet} ..."),
            ]);
            if self.sync_fails(&internet) {
                sync(failure_lines(&server, &site_server, site));
                return;
            }
            self.update(&internet, |s| {
                s.syncs += 1;
                s.subscription = Some(sub.clone());
            });
            sync(vec![format!("Done synchronizing WSUS Server {internet}")]);
        }
        sync(vec![
            logs::statmsg(6702, 'I', &site_server, site),
            format!("Updated {total} items in SMS database"),
            "Sync time: 0d00h00m01s".into(),
        ]);
    }

    fn sync_fails(&self, server: &str) -> bool {
        self.has_fault(server, Fault::SyncFails) || self.has_fault(server, Fault::Down)
    }

    /// Writes the periodic health lines of every installed server until `stop`.
    pub async fn health_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let every = Duration::from_millis(self.timing.health_interval_ms.max(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            for s in self.servers() {
                if s.role_installed {
                    self.write_health(&s.site, &s.name);
                }
            }
        }
    }
}

/// How WCM names its connection to a SUP's WSUS: the SSL port and `useSSL: True` when the web
/// site requires SSL (WCM then reaches it over HTTPS), else the HTTP port.
fn wcm_connection(s: &Server) -> String {
    let (port, ssl) = if s.ssl {
        (s.https_port, "True")
    } else {
        (s.http_port, "False")
    };
    format!(
        "server: {}, port: {port}, useSSL: {ssl}",
        s.name.to_ascii_uppercase()
    )
}

/// How WSyncMgr logs what woke it (track-software-update-synchronization.md, Microsoft's
/// SupportArticles-docs): its schedule, the parent site's sync notification file, or the
/// local request file the console's "Run Synchronization" drops.
fn wakeup_lines(trigger: &str, parent_site: &str) -> Vec<String> {
    let (wakeup, found, performing) = match trigger {
        "schedule" | "retry" => (
            "Wakeup for scheduled regular sync".to_string(),
            None,
            "Performing sync on regular schedule",
        ),
        "parent" => (
            "Wakeup by inbox drop".to_string(),
            Some(format!(
                "Found parent sync notification file {}.SYN",
                parent_site.to_ascii_uppercase()
            )),
            "Performing sync on parent request",
        ),
        _ => (
            "Wakeup by inbox drop".to_string(),
            Some("Found local sync request file".to_string()),
            "Performing sync on local request",
        ),
    };
    let mut lines = vec![wakeup];
    lines.extend(found);
    lines.push("Starting Sync".into());
    lines.push(performing.into());
    lines
}

/// A failed cycle: the upstream it could not reach, status message 6703, the retry.
fn failure_lines(upstream: &str, site_server: &str, site: &str) -> Vec<String> {
    let why = if upstream.is_empty() {
        "Sync failed: UssCommunicationError: WebException: The underlying connection was closed: Unable to connect to the remote server. Source: Microsoft.UpdateServices.ServerSyncWebServices.Client.ServerSyncCompressionProxy.GetUpdateData".to_string()
    } else {
        format!(
            "Sync failed: UssCommunicationError: WebException: Unable to connect to the upstream server {upstream}. Source: CWSyncMgr::DoSync"
        )
    };
    vec![
        why,
        logs::statmsg(6703, 'E', site_server, site),
        "Sync failed. Will retry in 60 minutes".into(),
    ]
}
