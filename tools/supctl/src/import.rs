//! `supctl import`: a site file for a live ConfigMgr 2007 site, read through its SMS Provider
//! over WinRM. What 2007's provider does not expose (the site mode, the control plane's own
//! settings, the active Internet-based SUP, NLB clusters, password references) comes from the
//! applied declaration of the same site when the coordinator has one, and the header says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sup_proto::v1;
use sup_smsprov::import::{FROM_DECLARATION, import_site};
use sup_wsman::client::{Auth, Client, Endpoint, Password};

use crate::{Context, Failure, invalid, output};

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The SMS Provider host's WinRM, e.g. https://cen-site.corp.example.com:5986/wsman.
    #[arg(long, env = "SMS_PROVIDER_URL")]
    pub provider: String,
    /// The site code.
    #[arg(long)]
    pub site: String,
    /// DOMAIN\user with read access to the SMS Provider.
    #[arg(long, env = "SMS_PROVIDER_USER")]
    pub user: String,
    /// The environment variable holding the password.
    #[arg(
        long,
        default_value = "SMS_PROVIDER_PASSWORD",
        conflicts_with = "password_file"
    )]
    pub password_env: String,
    /// A file holding the password instead.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// ntlm (the default; negotiate is the same) or kerberos (with --kdc).
    #[arg(long, default_value = "ntlm")]
    pub auth: String,
    /// The KDC for --auth kerberos: a domain controller, host[:port].
    #[arg(long, env = "SMS_PROVIDER_KDC")]
    pub kdc: Option<String>,
    /// The WinRM service's principal name for Kerberos (default HTTP/<provider host>).
    #[arg(long)]
    pub spn: Option<String>,
    /// The CA that signed an HTTPS listener's certificate (the system's roots otherwise).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Connect here instead of resolving the URL's host.
    #[arg(long)]
    pub connect_to: Option<SocketAddr>,
}

fn password(a: &ImportArgs) -> Result<Password, Failure> {
    match &a.password_file {
        // An unreadable file is a failure (1); a variable not set is bad input (2).
        Some(path) => Password::from_reference(None, Some(path))
            .map_err(|e| anyhow::anyhow!("the SMS Provider account: {e}").into()),
        None => Password::from_reference(Some(&a.password_env), None).map_err(|e| {
            invalid(format!(
                "the SMS Provider account: {e} (or give --password-file)"
            ))
        }),
    }
}

pub async fn import(ctx: &Context, a: &ImportArgs) -> Result<(), Failure> {
    let site = a.site.to_ascii_uppercase();
    let auth = Auth::parse(&a.auth, a.kdc.as_deref(), a.spn.as_deref())
        .map_err(|e| invalid(format!("--auth: {e}")))?;
    let client = Client::new(Endpoint {
        url: a.provider.clone(),
        user: a.user.clone(),
        password: password(a)?,
        ca_file: a.ca_file.clone(),
        connect_to: a.connect_to,
        timeout: Duration::from_secs(30),
        auth,
    })
    .map_err(|e| invalid(e.to_string()))?;
    let live = sup_smsprov::live::read(&client, &site)
        .await
        .with_context(|| format!("reading site {site} through {}", a.provider))?;
    // The applied declaration, when there is a coordinator that has one.
    let mut known = BTreeMap::new();
    let declared = match ctx.coordinator().await {
        Ok(mut c) => {
            if let Ok(list) = c.list_sites(v1::ListSitesRequest {}).await {
                for s in list.into_inner().sites {
                    known.insert(s.code, (!s.parent.is_empty()).then_some(s.parent));
                }
            }
            c.get_site(v1::GetSiteRequest { code: site.clone() })
                .await
                .ok()
                .map(|s| output::spec_of(&s.into_inner()))
        }
        Err(_) => None,
    };
    let raw = import_site(&live, declared.as_ref());
    if let Some(parent) = &raw.parent {
        known.entry(parent.clone()).or_insert(None);
    }
    let text = toml::to_string(&sup_core::spec::RawSiteFile {
        site: vec![raw.clone()],
    })
    .context("rendering the site file")?;
    println!(
        "# Site {site} as its SMS Provider at {} holds it.",
        a.provider
    );
    match &declared {
        Some(_) => println!(
            "# Not exposed by ConfigMgr 2007's SMS Provider, taken from the applied site: {}.",
            FROM_DECLARATION.join(", ")
        ),
        None => println!(
            "# Not exposed by ConfigMgr 2007's SMS Provider, and no applied site to take them from: {}. Set them before applying.",
            FROM_DECLARATION.join(", ")
        ),
    }
    print!("{text}");
    if let Err(v) = sup_core::spec::validate_sites(std::slice::from_ref(&raw), &known) {
        eprintln!(
            "supctl: the imported site does not pass every rule yet; fix these before applying:\n{v}"
        );
    }
    Ok(())
}
