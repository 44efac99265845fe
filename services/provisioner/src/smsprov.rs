//! The production driver: each site's SMS Provider over WS-Management (WinRM), editing the site
//! control file as the ConfigMgr 2007 console does. Install, remove and configure are edits of
//! the `SMS_SCI_*` rows in a session (refresh, change, commit, release); StartSync writes
//! `Sync Now` (2007's "Run Synchronization": a delta, not offered on child sites); the WSUS setup
//! values come from each SUP server's registry through `StdRegProv` over its own WinRM.
//!
//! Epoch fencing: a commit that names the active SUP is made only while the slot's epoch, read
//! from its leader just before, is still the command's; and if a newer epoch moved the slot
//! while this commit went through, the control file is pointed at the slot's current holder
//! again before the driver answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::Deserialize;
use sup_proto::v1;
use sup_smsprov::map::{
    self, DEFAULT_USE_PARENT_WSUS, DEFAULT_WSUS, ParentWsus, ProxyView, SYNC_NOW, SiteSystemView,
    SupView, WcmView,
};
use sup_smsprov::scf::{ComponentName, EmbeddedProperty, SysResUse, prop};
use sup_smsprov::wmi as sms;
use sup_wsman::client::{Client, Endpoint, Password, WsmanError};
use sup_wsman::instance::{Instance, Value, class_uri};

use crate::driver::{DriverError, SiteDriver};

/// One site's SMS Provider, as the `[providers.<CODE>]` table of the provisioner's config
/// gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The SMS Provider host's WinRM: `https://host:5986/wsman` or `http://host:5985/wsman`.
    pub url: String,
    /// `DOMAIN\user` with SMS Provider rights on the site.
    pub user: String,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `ntlm` or `negotiate` (NTLM inside SPNEGO's scheme name).
    #[serde(default = "default_auth")]
    pub auth: String,
    /// CA of the HTTPS listeners' certificates; the system's roots otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connect here instead of resolving the host names (a lab or a tunnel).
    #[serde(default)]
    pub connect_to: Option<SocketAddr>,
    /// WinRM of each site system, for its registry: `{server}` is replaced. Defaults to the
    /// provider URL with the server's name as host.
    #[serde(default)]
    pub site_system_url: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_auth() -> String {
    "ntlm".into()
}

fn default_timeout() -> u64 {
    30
}

impl ProviderSettings {
    /// Reads the password from its reference; the value itself is never in the config.
    pub fn password(&self) -> anyhow::Result<Password> {
        let value = match (&self.password_env, &self.password_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("the SMS Provider password is to come from environment variable {var}, which is not set")
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("the SMS Provider password file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            _ => anyhow::bail!("give the SMS Provider account's password as exactly one of password_env or password_file"),
        };
        if value.is_empty() {
            anyhow::bail!("the SMS Provider password is empty");
        }
        Ok(Password::new(value))
    }

    fn endpoint(&self, url: String, password: &Password) -> Endpoint {
        Endpoint {
            url,
            user: self.user.clone(),
            password: password.clone(),
            ca_file: self.ca_file.clone(),
            connect_to: self.connect_to,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        }
    }

    fn site_system_url(&self, server: &str) -> String {
        match &self.site_system_url {
            Some(t) => t.replace("{server}", server),
            None => {
                let (scheme, rest) = self.url.split_once("://").unwrap_or(("http", &self.url));
                let (authority, path) = rest.split_once('/').unwrap_or((rest, "wsman"));
                let port = authority
                    .rsplit_once(':')
                    .map(|(_, p)| format!(":{p}"))
                    .unwrap_or_default();
                format!("{scheme}://{server}{port}/{path}")
            }
        }
    }
}

/// Reads a slot from its leader: its epoch (the key's revision) and its holders.
pub trait SlotReader: Send + Sync + 'static {
    fn read<'a>(
        &'a self,
        site: &'a str,
        slot: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<(u64, Vec<String>)>>;
}

/// `HKEY_LOCAL_MACHINE` for StdRegProv.
const HKLM: &str = "2147483650";
/// WSUS setup's key (TechNet "Verifying WSUS Server Settings": `PortNumber`, `UsingSSL`); the
/// version is read from `VersionString` (named by public code, not by Microsoft's docs).
const WSUS_SETUP_KEY: &str = "SOFTWARE\\Microsoft\\Update Services\\Server\\Setup";

pub struct SmsProviderDriver {
    sites: BTreeMap<String, SiteProvider>,
    slots: Arc<dyn SlotReader>,
    /// The last commands committed per site, which a correction of drift commits again.
    remembered: Mutex<BTreeMap<String, Remembered>>,
    /// Woken after every commit, so drift is read right after it.
    pub committed: Arc<tokio::sync::Notify>,
}

/// What the coordinator last had committed on a site.
#[derive(Debug, Clone, Default)]
struct Remembered {
    installs: BTreeMap<String, v1::AgentInstallRoleRequest>,
    /// By slot.
    configures: BTreeMap<i32, v1::AgentConfigureRequest>,
}

struct SiteProvider {
    settings: ProviderSettings,
    password: Password,
    client: Client,
    registry: Mutex<BTreeMap<String, Arc<Client>>>,
    /// One edit of a site's control file at a time from this process.
    edit: tokio::sync::Mutex<()>,
}

fn reply(accepted: bool, detail: impl Into<String>) -> v1::AgentReply {
    v1::AgentReply {
        accepted,
        detail: detail.into(),
        duplicate: false,
    }
}

fn classify(url: &str, e: WsmanError) -> DriverError {
    if e.retryable() {
        DriverError::Unreachable {
            endpoint: url.to_string(),
            message: e.to_string(),
        }
    } else {
        DriverError::Refused {
            endpoint: url.to_string(),
            message: e.to_string(),
        }
    }
}

fn not_found(e: &WsmanError) -> bool {
    matches!(e, WsmanError::Fault { fault, .. } if fault.wmi_code == Some(sup_wsman::fault::code::WBEM_E_NOT_FOUND))
}

fn u16_of(v: u32, default: u16) -> u16 {
    if v == 0 {
        default
    } else {
        u16::try_from(v).unwrap_or(default)
    }
}

fn session_options(handle: &str) -> Vec<(String, String)> {
    vec![("wmi:SessionHandle".to_string(), handle.to_string())]
}

impl SmsProviderDriver {
    /// A driver for the sites of `providers`; fails when a password reference cannot be read
    /// or a URL is not one.
    pub fn new(
        providers: &BTreeMap<String, ProviderSettings>,
        slots: Arc<dyn SlotReader>,
    ) -> anyhow::Result<Self> {
        let mut sites = BTreeMap::new();
        for (code, s) in providers {
            let auth = s.auth.to_ascii_lowercase();
            if auth != "ntlm" && auth != "negotiate" {
                anyhow::bail!(
                    "providers.{code}.auth = {:?}: ntlm or negotiate (Kerberos needs a KDC this build does not reach)",
                    s.auth
                );
            }
            let password = s
                .password()
                .map_err(|e| anyhow::anyhow!("providers.{code}: {e}"))?;
            let client = Client::new(s.endpoint(s.url.clone(), &password))
                .map_err(|e| anyhow::anyhow!("providers.{code}: {e}"))?;
            sites.insert(
                code.to_ascii_uppercase(),
                SiteProvider {
                    settings: s.clone(),
                    password,
                    client,
                    registry: Mutex::new(BTreeMap::new()),
                    edit: tokio::sync::Mutex::new(()),
                },
            );
        }
        Ok(Self {
            sites,
            slots,
            remembered: Mutex::new(BTreeMap::new()),
            committed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The sites this driver reaches.
    pub fn site_codes(&self) -> Vec<String> {
        self.sites.keys().cloned().collect()
    }

    /// Reads a site as its provider holds it.
    pub async fn read(&self, site: &str) -> Result<sup_smsprov::live::LiveSite, DriverError> {
        let p = self.site(site)?;
        sup_smsprov::live::read(&p.client, &site.to_ascii_uppercase())
            .await
            .map_err(|e| p.err(e))
    }

    fn remember(&self, site: &str, f: impl FnOnce(&mut Remembered)) {
        let mut g = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(site.to_ascii_uppercase()).or_default());
        drop(g);
        self.committed.notify_one();
    }

    /// Commits again the last install and configuration commands of `site`: the correction of
    /// drift. Returns how many commands were committed again.
    pub async fn correct(&self, site: &str) -> Result<usize, DriverError> {
        let r = self
            .remembered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&site.to_ascii_uppercase())
            .cloned()
            .unwrap_or_default();
        let mut n = 0;
        for req in r.installs.into_values() {
            if self.install_role(req).await?.accepted {
                n += 1;
            }
        }
        for req in r.configures.into_values() {
            if self.configure(req).await?.accepted {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn serves(&self, site: &str) -> bool {
        self.sites.contains_key(&site.to_ascii_uppercase())
    }

    fn site(&self, code: &str) -> Result<&SiteProvider, DriverError> {
        self.sites
            .get(&code.to_ascii_uppercase())
            .ok_or_else(|| DriverError::Refused {
                endpoint: format!("site {code}"),
                message: format!("no SMS Provider is configured for site {code}"),
            })
    }
}

impl SiteProvider {
    fn err(&self, e: WsmanError) -> DriverError {
        classify(&self.settings.url, e)
    }

    fn uri(site: &str, class: &str) -> String {
        class_uri(&sms::namespace(site), class)
    }

    async fn invoke(
        &self,
        site: &str,
        method: &str,
        params: &[(&str, &str)],
        options: &[(String, String)],
    ) -> Result<Instance, DriverError> {
        let out = self
            .client
            .invoke(
                &Self::uri(site, sms::SITE_CONTROL_FILE),
                method,
                params,
                &[],
                options,
            )
            .await
            .map_err(|e| self.err(e))?;
        match out.text("ReturnValue").map(str::trim) {
            Some("0") | None => Ok(out),
            Some(code) => Err(DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: format!("SMS_SiteControlFile.{method} returned {code}"),
            }),
        }
    }

    /// Opens a session on `site`'s control file and refreshes it; the guard keeps this
    /// process's other edits of the site out until the session is closed.
    async fn open(&self, site: &str) -> Result<Session<'_>, DriverError> {
        let guard = self.edit.lock().await;
        let out = self.invoke(site, "GetSessionHandle", &[], &[]).await?;
        let handle = out.text("SessionHandle").unwrap_or_default().to_string();
        if handle.is_empty() {
            return Err(DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: "GetSessionHandle returned no handle".into(),
            });
        }
        let options = session_options(&handle);
        let session = Session {
            _guard: guard,
            handle,
            options,
        };
        if let Err(e) = self
            .invoke(site, "RefreshSCF", &[("SiteCode", site)], &session.options)
            .await
        {
            self.release(site, &session).await;
            return Err(e);
        }
        Ok(session)
    }

    async fn release(&self, site: &str, session: &Session<'_>) {
        if let Err(e) = self
            .invoke(
                site,
                "ReleaseSessionHandle",
                &[("SessionHandle", &session.handle)],
                &[],
            )
            .await
        {
            tracing::warn!(site, error = %e, "releasing a site control file session");
        }
    }

    /// Commits the session when the edit says so, and releases it in every case (a release
    /// without a commit discards the changes).
    async fn close(
        &self,
        site: &str,
        session: Session<'_>,
        edit: Result<Edit, DriverError>,
    ) -> Result<v1::AgentReply, DriverError> {
        let result = match edit {
            Ok(Edit::Commit(detail)) => self
                .invoke(site, "CommitSCF", &[("SiteCode", site)], &session.options)
                .await
                .map(|_| reply(true, detail)),
            Ok(Edit::Drop(r)) => Ok(r),
            Err(e) => Err(e),
        };
        self.release(site, &session).await;
        result
    }

    async fn query_one(
        &self,
        site: &str,
        wql: &str,
        options: &[(String, String)],
    ) -> Result<Option<Instance>, DriverError> {
        let items = self
            .client
            .query(&sms::namespace(site), wql, options)
            .await
            .map_err(|e| self.err(e))?;
        Ok(items.into_iter().next())
    }

    async fn component(
        &self,
        site: &str,
        name: ComponentName,
        options: &[(String, String)],
    ) -> Result<Instance, DriverError> {
        let wql = format!(
            "SELECT * FROM SMS_SCI_Component WHERE ComponentName = '{}' AND SiteCode = '{site}' AND FileType = 2",
            name.as_str()
        );
        self.query_one(site, &wql, options)
            .await?
            .ok_or_else(|| DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: format!(
                    "site {site} has no {} in its site control file",
                    name.as_str()
                ),
            })
    }

    async fn put_component(
        &self,
        site: &str,
        read: Instance,
        props: &[EmbeddedProperty],
        options: &[(String, String)],
    ) -> Result<(), DriverError> {
        let merged = sms::with_props(read, props);
        let parsed = sms::component_from_instance(&merged).ok_or_else(|| DriverError::Refused {
            endpoint: self.settings.url.clone(),
            message: "a component row without its ComponentName".into(),
        })?;
        self.client
            .put(
                &Self::uri(site, sms::COMPONENT),
                &sms::component_selectors(&parsed),
                &merged,
                options,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Creates a role row, or puts its settings over the existing one's.
    async fn upsert_row(
        &self,
        site: &str,
        row: &SysResUse,
        options: &[(String, String)],
    ) -> Result<(), DriverError> {
        let uri = Self::uri(site, sms::SYS_RES_USE);
        let keys = sms::row_selectors(row);
        match self.client.get(&uri, &keys, options).await {
            Ok(read) => self
                .client
                .put(&uri, &keys, &sms::with_props(read, &row.props), options)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e)),
            Err(e) if not_found(&e) => self
                .client
                .create(&uri, &sms::row_to_instance(row), options)
                .await
                .map_err(|e| self.err(e)),
            Err(e) => Err(self.err(e)),
        }
    }

    fn registry_client(&self, server: &str) -> Result<Arc<Client>, DriverError> {
        let mut g = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.get(server) {
            return Ok(c.clone());
        }
        let url = self.settings.site_system_url(server);
        let c = Arc::new(
            Client::new(self.settings.endpoint(url.clone(), &self.password))
                .map_err(|e| classify(&url, e))?,
        );
        g.insert(server.to_string(), c.clone());
        Ok(c)
    }
}

/// What an edit does at its end.
enum Edit {
    /// Commit, and answer this detail.
    Commit(String),
    /// Release without committing, and answer this.
    Drop(v1::AgentReply),
}

/// An open session of a site's control file.
struct Session<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    handle: String,
    options: Vec<(String, String)>,
}

fn role_row(site: &str, r: &v1::SoftwareUpdatePoint) -> SysResUse {
    map::sup_row(
        site,
        &SupView {
            server: &r.server,
            http_port: u16_of(r.http_port, 80),
            https_port: u16_of(r.https_port, 443),
            ssl: r.ssl,
            proxy: r
                .proxy
                .as_ref()
                .filter(|p| !p.server.is_empty())
                .map(|p| ProxyView {
                    server: &p.server,
                    port: u16_of(p.port, 80),
                    account: Some(p.account.as_str()).filter(|a| !a.is_empty()),
                }),
        },
    )
}

fn now_unix() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

impl SmsProviderDriver {
    /// Whether `epoch` is still the slot's; the holder it has otherwise.
    async fn current(
        &self,
        site: &str,
        epoch: u64,
    ) -> Result<Result<(), (u64, Vec<String>)>, DriverError> {
        let (now, holders) =
            self.slots
                .read(site, "intranet")
                .await
                .map_err(|e| DriverError::Unreachable {
                    endpoint: "NATS".into(),
                    message: format!("reading the active SUP of {site}: {e}"),
                })?;
        Ok(if epoch >= now {
            Ok(())
        } else {
            Err((now, holders))
        })
    }

    /// Points `DefaultWSUS` at the slot's current holder after a commit a newer epoch overtook.
    async fn repoint(
        &self,
        p: &SiteProvider,
        site: &str,
        holder: String,
    ) -> Result<(), DriverError> {
        {
            let session = p.open(site).await?;
            let options = &session.options[..];
            let edit: Result<Edit, DriverError> = async {
                let wcm = p
                    .component(site, ComponentName::WsusConfigurationManager, options)
                    .await?;
                p.put_component(
                    site,
                    wcm,
                    &[EmbeddedProperty::value2(DEFAULT_WSUS, &holder)],
                    options,
                )
                .await?;
                Ok(Edit::Commit(format!("DefaultWSUS put back to {holder}")))
            }
            .await;
            p.close(site, session, edit).await
        }
        .map(|_| ())
    }
}

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
        // WSUS's own web site pairs 8530 with 8531; the default web site's SSL port is 443.
        info.https_port = if info.http_port == 80 {
            443
        } else {
            info.http_port + 1
        };
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
                    Ok(Edit::Commit(format!("DefaultWSUS = {server} committed at epoch {epoch}")))
                }
 .await;
            p.close(&site, session, edit).await
        }?;
        if r.accepted
            && let Err((now, holders)) = self.current(&req.site.to_ascii_uppercase(), epoch).await?
            && let Some(holder) = holders.first().cloned()
        {
            tracing::warn!(site = %req.site, epoch, now, holder, "a newer epoch moved the slot during the commit; pointing the control file back at its holder");
            self.repoint(p, &req.site.to_ascii_uppercase(), holder)
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
                Ok(Edit::Commit("Sync Now committed (a delta synchronization, as ConfigMgr 2007's Run Synchronization)".into()))
            }
 .await;
            p.close(&site, session, edit).await
        }
    }
}

/// Subscribes exactly the given classifications and products (WSUS GUIDs) among the site's
/// categories that allow it.
async fn subscribe(
    p: &SiteProvider,
    site: &str,
    classifications: &[String],
    products: &[String],
    options: &[(String, String)],
) -> Result<(), DriverError> {
    let items = p
        .client
        .query(
            &sms::namespace(site),
            "SELECT * FROM SMS_UpdateCategoryInstance",
            options,
        )
        .await
        .map_err(|e| p.err(e))?;
    let uri = SiteProvider::uri(site, sms::CATEGORY_INSTANCE);
    for i in items {
        let Some(row) = sms::category_from_instance(&i) else {
            continue;
        };
        let id = &row.subscription.unique_id;
        let want = match sms::category_type(id) {
            "UpdateClassification" => classifications
                .iter()
                .any(|c| id.ends_with(&format!(":{}", c.to_ascii_lowercase()))),
            "Product" => products
                .iter()
                .any(|c| id.ends_with(&format!(":{}", c.to_ascii_lowercase()))),
            _ => continue,
        };
        if want == row.subscription.subscribed || (want && !row.allow_subscription) {
            continue;
        }
        let mut put = i.clone();
        put.props.retain(|(k, _)| k != "IsSubscribed");
        put.push("IsSubscribed", Value::Text(want.to_string()));
        p.client
            .put(
                &uri,
                &[("CategoryInstanceID".to_string(), row.id.to_string())],
                &put,
                options,
            )
            .await
            .map_err(|e| p.err(e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> ProviderSettings {
        ProviderSettings {
            url: url.into(),
            user: "CORP\\svc".into(),
            password_env: None,
            password_file: None,
            auth: default_auth(),
            ca_file: None,
            connect_to: None,
            site_system_url: None,
            timeout_secs: 30,
        }
    }

    #[test]
    fn a_site_systems_winrm_is_the_providers_with_its_own_name() {
        let s = settings("https://cen-site.corp.example.com:5986/wsman");
        assert_eq!(
            s.site_system_url("cen-sup01.corp.example.com"),
            "https://cen-sup01.corp.example.com:5986/wsman"
        );
        let s = ProviderSettings {
            site_system_url: Some("http://{server}:80/wsman".into()),
            ..settings("http://x/wsman")
        };
        assert_eq!(s.site_system_url("a"), "http://a:80/wsman");
    }

    #[test]
    fn the_password_comes_only_by_reference() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let s = ProviderSettings {
            password_file: Some(file),
            ..settings("http://x/wsman")
        };
        assert_eq!(s.password().expect("password").expose(), "s3cret");
        let none = settings("http://x/wsman");
        assert!(none.password().is_err());
        let both = ProviderSettings {
            password_env: Some("X".into()),
            password_file: Some("/x".into()),
            ..settings("http://x/wsman")
        };
        assert!(both.password().is_err());
        let unset = ProviderSettings {
            password_env: Some("SUP_TEST_UNSET_PROVIDER_PASSWORD".into()),
            ..settings("http://x/wsman")
        };
        let e = unset.password().expect_err("unset").to_string();
        assert!(e.contains("SUP_TEST_UNSET_PROVIDER_PASSWORD"), "{e}");
    }

    #[test]
    fn providers_come_from_the_environment_too() {
        // A service name of its own keeps these variables away from other tests.
        // SAFETY: this test is the only reader and writer of these variables.
        unsafe {
            std::env::set_var(
                "SUP_PROVTEST__PROVIDERS__CEN__URL",
                "http://cen-site:5985/wsman",
            );
            std::env::set_var("SUP_PROVTEST__PROVIDERS__CEN__USER", "LAB\\sup-provider");
            std::env::set_var("SUP_PROVTEST__PROVIDERS__CEN__PASSWORD_ENV", "PW");
        }
        let s: crate::Settings =
            sup_runtime::load_config("provtest", crate::DEFAULTS, None).expect("settings");
        let (code, p) = s.providers.iter().next().expect("one provider");
        assert!(code.eq_ignore_ascii_case("CEN"));
        assert_eq!(p.user, "LAB\\sup-provider");
        assert_eq!(p.password_env.as_deref(), Some("PW"));
        assert_eq!(p.auth, "ntlm");
    }
}
