//! The procedure's prerequisites, checked before an install: what the site system must have
//! and what the installation account must resolve to.

use super::*;

/// Checks the procedure's prerequisites against what the site system reports.
pub fn prerequisites(
    info: &v1::WsusInfo,
    role: &v1::SoftwareUpdatePoint,
    system: Option<&v1::SiteSystem>,
) -> Result<(), String> {
    if !info.installed {
        return Err(format!(
            "WSUS 3.0 is not installed on {}: install WSUS 3.0 SP1 or later (and the WSUS 3.0 administration console on the site server), then apply again",
            info.server
        ));
    }
    // An SMS Provider site's WSUS setup values may not record the version (`VersionString`):
    // SUPSetup checks it again on the server.
    if !info.version.is_empty() && !info.version.starts_with("3.") {
        return Err(format!(
            "{} runs WSUS {}, not WSUS 3.0: ConfigMgr 2007 needs WSUS 3.0 SP1 or later",
            info.server, info.version
        ));
    }
    if !info.version.is_empty() && !sup_core::wsus_version::supported(&info.version) {
        return Err(format!(
            "{} runs WSUS {}, and ConfigMgr 2007 SP1 needs WSUS 3.0 SP1 or later ({} or later): install WSUS 3.0 SP1 or SP2 on it, then apply again",
            info.server,
            info.version,
            sup_core::wsus_version::min_wsus_version()
        ));
    }
    let (http, https) = (
        if role.http_port == 0 {
            80
        } else {
            role.http_port
        },
        if role.https_port == 0 {
            443
        } else {
            role.https_port
        },
    );
    // An HTTPS port of 0 is one the site system does not say (WSUS setup records only the
    // web site's port).
    if http != info.http_port || (info.https_port != 0 && https != info.https_port) {
        return Err(format!(
            "the SUP's ports {http}/{https} differ from the WSUS web site's {}/{} on {}: set http_port and https_port to the ports of the WSUS web site in IIS",
            info.http_port, info.https_port, info.server
        ));
    }
    if let Some(sys) = system
        && sys.computer_account_access == Some(false)
    {
        resolvable(
            &format!("the installation account {}", sys.install_account),
            sys.install_password.as_ref(),
        )?;
    }
    if let Some(proxy) = &role.proxy
        && !proxy.account.is_empty()
    {
        resolvable(
            &format!("the proxy account {}", proxy.account),
            proxy.password.as_ref(),
        )?;
    }
    Ok(())
}

/// Checks that a password reference can be read here, without keeping or showing the password.
fn resolvable(account: &str, secret: Option<&v1::SecretRef>) -> Result<(), String> {
    match secret.and_then(|p| p.source.as_ref()) {
        Some(v1::secret_ref::Source::Env(var)) => {
            if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                return Err(format!(
                    "{account}'s password is to come from environment variable {var}, which is not set for the provisioner"
                ));
            }
        }
        Some(v1::secret_ref::Source::File(path)) => {
            if std::fs::read(path).map(|b| b.is_empty()).unwrap_or(true) {
                return Err(format!(
                    "{account}'s password is to come from file {path}, which the provisioner cannot read"
                ));
            }
        }
        None => return Err(format!("{account} has no password reference")),
    }
    Ok(())
}
