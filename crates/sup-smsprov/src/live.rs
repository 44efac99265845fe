//! Reading one site's SUP configuration from its SMS Provider through a WS-Management client:
//! `SMS_Site` (name, parent, site server: SMS 2003 and later SDKs), the two role rows and the two
//! components of the proposed control file, and the category subscriptions. The only IO of the
//! crate, and only through `sup-wsman`.

use sup_wsman::client::{Client, WsmanError};
use sup_wsman::instance::Instance;

use crate::scf::{ControlFile, Role};
use crate::wmi::{self, namespace};

/// What the provider says of a site.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveSite {
    pub control_file: ControlFile,
    /// `SMS_Site.SiteName`.
    pub name: Option<String>,
    /// `SMS_Site.ReportingSiteCode`: the parent site, blank at the top of a hierarchy.
    pub parent: Option<String>,
    /// `SMS_Site.ServerName`.
    pub site_server: Option<String>,
}

fn non_empty(i: &Instance, name: &str) -> Option<String> {
    i.text(name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads `site` (upper case code) through `client`, the SMS Provider's WinRM.
pub async fn read(client: &Client, site: &str) -> Result<LiveSite, WsmanError> {
    let ns = namespace(site);
    let query = |class: &str, control_file: bool| {
        if control_file {
            format!("SELECT * FROM {class} WHERE SiteCode = '{site}' AND FileType = 2")
        } else {
            format!("SELECT * FROM {class} WHERE SiteCode = '{site}'")
        }
    };
    let sites = client.query(&ns, &query("SMS_Site", false), &[]).await?;
    let rows = client
        .query(&ns, &query(wmi::SYS_RES_USE, true), &[])
        .await?;
    let components = client.query(&ns, &query(wmi::COMPONENT, true), &[]).await?;
    let categories = client
        .query(
            &ns,
            &format!("SELECT * FROM {}", wmi::CATEGORY_INSTANCE),
            &[],
        )
        .await?;
    let me = sites.first();
    let mut rows: Vec<_> = rows.iter().filter_map(wmi::row_from_instance).collect();
    rows.sort_by_key(|r| (r.role != Role::SiteSystem, r.nal_path.to_ascii_lowercase()));
    let mut categories: Vec<_> = categories
        .iter()
        .filter_map(wmi::category_from_instance)
        .map(|c| c.subscription)
        .collect();
    categories.sort();
    Ok(LiveSite {
        control_file: ControlFile {
            site_code: site.to_string(),
            rows,
            components: components
                .iter()
                .filter_map(wmi::component_from_instance)
                .collect(),
            categories,
        },
        name: me.and_then(|s| non_empty(s, "SiteName")),
        parent: me
            .and_then(|s| non_empty(s, "ReportingSiteCode"))
            .map(|p| p.to_ascii_uppercase()),
        site_server: me
            .and_then(|s| non_empty(s, "ServerName"))
            .map(|s| s.to_ascii_lowercase()),
    })
}
