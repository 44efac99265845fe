//! `supctl sup`: one software update point at a time (add, remove, activate).

use super::*;

pub(crate) async fn sup(ctx: &Context, command: SupCommand) -> Result<(), Failure> {
    match command {
        SupCommand::Add {
            role,
            http_port,
            https_port,
            ssl,
            proxy,
            internet_fqdn,
            allow_internet_clients,
            no_computer_account_access,
            install_account,
            install_password_env,
            install_password_file,
            active,
            internet,
        } => {
            let proxy = match proxy {
                Some(p) => {
                    let (host, port) = p
                        .rsplit_once(':')
                        .ok_or_else(|| invalid(format!("--proxy {p}: expected HOST:PORT")))?;
                    let port: u32 = port
                        .parse()
                        .map_err(|_| invalid(format!("--proxy {p}: {port} is not a port")))?;
                    Some(v1::Proxy {
                        server: host.to_string(),
                        port,
                        ..Default::default()
                    })
                }
                None => None,
            };
            let password = match (install_password_env, install_password_file) {
                (Some(e), None) => Some(v1::secret_ref::Source::Env(e)),
                (None, Some(f)) => Some(v1::secret_ref::Source::File(f)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "give --install-password-env or --install-password-file, not both",
                    ));
                }
            };
            let slot = match (active, internet) {
                (true, true) => v1::Slot::Internet,
                (true, false) => v1::Slot::Intranet,
                _ => v1::Slot::Unspecified,
            };
            let c = ctx.coordinator().await?;
            let status = ctx
                .change(
                    v1::AddRoleRequest {
                        site: role.site.clone(),
                        site_system: Some(v1::SiteSystem {
                            server: role.server.clone(),
                            internet_fqdn: internet_fqdn.unwrap_or_default(),
                            computer_account_access: Some(!no_computer_account_access),
                            install_account: install_account.unwrap_or_default(),
                            install_password: password.map(|p| v1::SecretRef { source: Some(p) }),
                        }),
                        role: Some(v1::SoftwareUpdatePoint {
                            server: role.server.clone(),
                            active: slot as i32,
                            http_port: http_port.map(u32::from).unwrap_or(0),
                            https_port: https_port.map(u32::from).unwrap_or(0),
                            ssl,
                            proxy,
                            allow_internet_clients,
                        }),
                        op_id: op_id(),
                    },
                    |r| {
                        let mut c = c.clone();
                        async move { c.add_role(r).await }
                    },
                )
                .await?;
            println!(
                "{} {}: software update point {}",
                role.site,
                role.server,
                output::state_name(status.state)
            );
            Ok(())
        }
        SupCommand::Remove { role } => {
            let c = ctx.coordinator().await?;
            let status = ctx
                .change(
                    v1::RemoveRoleRequest {
                        site: role.site.clone(),
                        server: role.server.clone(),
                        op_id: op_id(),
                    },
                    |r| {
                        let mut c = c.clone();
                        async move { c.remove_role(r).await }
                    },
                )
                .await?;
            println!(
                "{} {}: {}",
                role.site,
                role.server,
                output::state_name(status.state)
            );
            Ok(())
        }
        SupCommand::Activate {
            site,
            server,
            nlb,
            internet,
        } => {
            let target = server
                .or(nlb)
                .ok_or_else(|| invalid("give --server or --nlb"))?;
            let c = ctx.coordinator().await?;
            let slot = if internet {
                v1::Slot::Internet
            } else {
                v1::Slot::Intranet
            };
            let a = ctx
                .change(
                    v1::SetActiveRequest {
                        site: site.clone(),
                        slot: slot as i32,
                        target,
                        op_id: op_id(),
                    },
                    |r| {
                        let mut c = c.clone();
                        async move { c.set_active(r).await }
                    },
                )
                .await?;
            println!(
                "{site}: {} is the active {} SUP (epoch {})",
                a.target,
                if internet {
                    "Internet-based"
                } else {
                    "intranet"
                },
                a.epoch
            );
            Ok(())
        }
    }
}
