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
use sup_smsprov::map::{self, DEFAULT_WSUS, ProxyView, SupView};
use sup_smsprov::scf::{ComponentName, EmbeddedProperty, SysResUse};
use sup_wsman::client::{Auth, Client, Endpoint, Password, WsmanError};

use crate::driver::{DriverError, SiteDriver};

mod ops;
mod session;

use session::{Edit, SiteProvider};

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
    /// `ntlm` or `negotiate` (NTLM under the Negotiate scheme), or `kerberos` (tickets from
    /// `kdc`).
    #[serde(default = "default_auth")]
    pub auth: String,
    /// The KDC for `auth = "kerberos"`: `host`, `host:port` or `tcp://host:port` (a domain
    /// controller of the account's domain).
    #[serde(default)]
    pub kdc: Option<String>,
    /// The WinRM service's principal name for Kerberos; `HTTP/<host of the URL>` by default.
    #[serde(default)]
    pub spn: Option<String>,
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
        Password::from_reference(self.password_env.as_deref(), self.password_file.as_deref())
            .map_err(|e| {
                anyhow::anyhow!("the SMS Provider account (password_env or password_file): {e}")
            })
    }

    /// How to authenticate, checked when the provisioner starts.
    pub fn auth(&self) -> anyhow::Result<Auth> {
        Auth::parse(&self.auth, self.kdc.as_deref(), self.spn.as_deref())
            .map_err(|e| anyhow::anyhow!("auth: {e}"))
    }

    /// A site system's own WinRM is a different host: a configured SPN names the provider's,
    /// so the site system's is derived from its URL.
    fn endpoint(&self, url: String, password: &Password, auth: Auth) -> Endpoint {
        let auth = match auth {
            Auth::Kerberos { kdc, .. } if url != self.url => Auth::Kerberos { kdc, spn: None },
            same => same,
        };
        Endpoint {
            url,
            user: self.user.clone(),
            password: password.clone(),
            ca_file: self.ca_file.clone(),
            connect_to: self.connect_to,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            auth,
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
pub(super) const HKLM: &str = "2147483650";
/// WSUS setup's key (TechNet "Verifying WSUS Server Settings": `PortNumber`, `UsingSSL`); the
/// version is read from `VersionString` (named by public code, not by Microsoft's docs).
pub(super) const WSUS_SETUP_KEY: &str = "SOFTWARE\\Microsoft\\Update Services\\Server\\Setup";

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

pub(super) fn reply(accepted: bool, detail: impl Into<String>) -> v1::AgentReply {
    v1::AgentReply {
        accepted,
        detail: detail.into(),
        duplicate: false,
    }
}

pub(super) fn classify(url: &str, e: WsmanError) -> DriverError {
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

pub(super) fn not_found(e: &WsmanError) -> bool {
    matches!(e, WsmanError::Fault { fault, .. } if fault.wmi_code == Some(sup_wsman::fault::code::WBEM_E_NOT_FOUND))
}

pub(super) fn u16_of(v: u32, default: u16) -> u16 {
    if v == 0 {
        default
    } else {
        u16::try_from(v).unwrap_or(default)
    }
}

pub(super) fn session_options(handle: &str) -> Vec<(String, String)> {
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
            let auth = s
                .auth()
                .map_err(|e| anyhow::anyhow!("providers.{code}.{e}"))?;
            let password = s
                .password()
                .map_err(|e| anyhow::anyhow!("providers.{code}: {e}"))?;
            let client = Client::new(s.endpoint(s.url.clone(), &password, auth.clone()))
                .map_err(|e| anyhow::anyhow!("providers.{code}: {e}"))?;
            sites.insert(
                code.to_ascii_uppercase(),
                SiteProvider {
                    settings: s.clone(),
                    password,
                    auth,
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

pub(super) fn role_row(site: &str, r: &v1::SoftwareUpdatePoint) -> SysResUse {
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

pub(super) fn now_unix() -> u32 {
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
        epoch: u64,
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
                Ok(Edit::CommitAt(
                    format!("DefaultWSUS put back to {holder}"),
                    epoch,
                ))
            }
            .await;
            p.close(site, session, edit).await
        }
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
