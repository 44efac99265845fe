//! `supctl site`: list, show and delete applied sites.

use super::*;

pub(crate) async fn site(ctx: &Context, command: SiteCommand) -> Result<(), Failure> {
    let mut c = ctx.coordinator().await?;
    match command {
        SiteCommand::List { output } => {
            let sites = c
                .list_sites(v1::ListSitesRequest {})
                .await?
                .into_inner()
                .sites;
            let names: Vec<String> = sites.iter().map(|s| s.code.clone()).collect();
            format::print(output, &output::sites_json(&sites), &names, |wide| {
                output::sites_table(&sites, wide)
            })?;
        }
        SiteCommand::Get { code, output } => {
            let site = c.get_site(v1::GetSiteRequest { code }).await?.into_inner();
            let names = [site.code.clone()];
            let json = output::site_json(&site);
            match output {
                SiteFormat::Toml => print!("{}", output::site_toml(&site)),
                SiteFormat::Table => print!("{}", output::site_table(&site, false)),
                SiteFormat::Wide => print!("{}", output::site_table(&site, true)),
                SiteFormat::Json => format::print(Format::Json, &json, &names, |_| String::new())?,
                SiteFormat::Yaml => format::print(Format::Yaml, &json, &names, |_| String::new())?,
                SiteFormat::Name => format::print(Format::Name, &json, &names, |_| String::new())?,
            }
        }
        SiteCommand::Delete { code } => {
            ctx.change(
                v1::DeleteSiteRequest {
                    code: code.clone(),
                    op_id: op_id(),
                },
                |r| {
                    let mut c = c.clone();
                    async move { c.delete_site(r).await }
                },
            )
            .await?;
            println!("site {code} deleted; its roles are being removed");
        }
    }
    Ok(())
}
