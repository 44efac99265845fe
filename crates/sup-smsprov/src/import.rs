//! A site file for a live site: what its SMS Provider holds (through [`crate::map`]'s reading of
//! the control file, and `SMS_Site`), completed by the applied declaration of the same site for
//! what ConfigMgr 2007 does not expose there: the site mode, the control plane's own settings
//! (failover, time zone), which SUP is the active Internet-based one, NLB clusters, and password
//! references.

use sup_core::spec::{RawSite, RawSoftwareUpdates};

use crate::live::LiveSite;
use crate::map::site_from_control_file;

/// The site file fields an import takes from the applied declaration, never from the provider.
pub const FROM_DECLARATION: &[&str] = &[
    "mode",
    "failover",
    "time_zone",
    "software_update_point.active = \"internet\"",
    "software_update_point.allow_internet_clients",
    "nlb_cluster",
    "install_password_env / install_password_file",
    "proxy.password_env / proxy.password_file",
];

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let norm = |l: &[String]| {
        let mut v: Vec<String> = l.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

/// The site file of `live`, completed by `declared` when the site is applied already.
pub fn import_site(live: &LiveSite, declared: Option<&RawSite>) -> RawSite {
    let mut site = site_from_control_file(&live.control_file);
    site.name = live
        .name
        .clone()
        .or_else(|| declared.and_then(|d| d.name.clone()));
    site.parent = live
        .parent
        .clone()
        .or_else(|| declared.and_then(|d| d.parent.clone()));
    site.site_server = live.site_server.clone().or(site.site_server);
    // Only servers with a SUP row are the wizard's site systems here: the site server's own
    // "SMS Site System" row is not one of them.
    let sups: Vec<String> = site
        .software_update_point
        .iter()
        .map(|s| s.server.clone())
        .collect();
    site.site_system.retain(|s| {
        sups.iter().any(|x| same(x, &s.server))
            || declared.is_some_and(|d| d.site_system.iter().any(|x| same(&x.server, &s.server)))
    });
    if let Some(d) = declared {
        site.mode = d.mode.clone();
        site.failover = d.failover.clone();
        site.time_zone = d.time_zone.clone();
        for sys in &mut site.site_system {
            if let Some(ds) = d.site_system.iter().find(|x| same(&x.server, &sys.server)) {
                sys.install_password_env = ds.install_password_env.clone();
                sys.install_password_file = ds.install_password_file.clone();
            }
        }
        for sup in &mut site.software_update_point {
            let Some(ds) = d
                .software_update_point
                .iter()
                .find(|x| same(&x.server, &sup.server))
            else {
                continue;
            };
            if ds.active.as_deref() == Some("internet") {
                sup.active = Some("internet".into());
            }
            sup.allow_internet_clients = ds.allow_internet_clients;
            if let (Some(p), Some(dp)) = (sup.proxy.as_mut(), ds.proxy.as_ref()) {
                p.password_env = dp.password_env.clone();
                p.password_file = dp.password_file.clone();
            }
        }
        // The declaration's order, then the rest as read.
        site.site_system.sort_by_key(|s| {
            d.site_system
                .iter()
                .position(|x| same(&x.server, &s.server))
                .unwrap_or(usize::MAX)
        });
        site.software_update_point.sort_by_key(|s| {
            d.software_update_point
                .iter()
                .position(|x| same(&x.server, &s.server))
                .unwrap_or(usize::MAX)
        });
        site.nlb_cluster = d.nlb_cluster.clone();
        // An NLB cluster holds the slot for its members: the member the control file names is
        // the cluster.
        for c in site.nlb_cluster.iter().filter(|c| c.active.is_some()) {
            for sup in &mut site.software_update_point {
                if c.members.iter().any(|m| same(m, &sup.server))
                    && sup.active.as_deref() == c.active.as_deref()
                {
                    sup.active = None;
                }
            }
        }
    }
    // Subscriptions are sets: a declaration listing the same ones keeps its order.
    if let (Some(su), Some(dsu)) = (
        site.software_updates.as_mut(),
        declared.and_then(|d| d.software_updates.as_ref()),
    ) {
        for (live, decl) in [
            (&mut su.classifications, &dsu.classifications),
            (&mut su.products, &dsu.products),
            (&mut su.update_file_languages, &dsu.update_file_languages),
            (&mut su.summary_languages, &dsu.summary_languages),
        ] {
            if let (Some(l), Some(d)) = (live.as_mut(), decl.as_ref())
                && same_set(l, d)
            {
                l.clone_from(d);
            }
        }
    }
    // A child site inherits the schedule, categories and languages of the top of its hierarchy.
    if site.parent.is_some()
        && let Some(su) = site.software_updates.as_mut()
    {
        *su = RawSoftwareUpdates {
            sync_source: su.sync_source.take(),
            reporting_events: su.reporting_events.take(),
            ..Default::default()
        };
    }
    site
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scf::*;
    use sup_core::spec::{RawNlbCluster, RawSiteSystem, RawSoftwareUpdatePoint};

    fn live() -> LiveSite {
        let mut wcm = Component::new("CH1", ComponentName::WsusConfigurationManager, "ch1-site");
        wcm.props = vec![
            EmbeddedProperty::value2(crate::map::DEFAULT_WSUS, "n1.corp.example.com"),
            EmbeddedProperty::value(crate::map::DEFAULT_USE_PARENT_WSUS, 1),
        ];
        let mut sync = Component::new("CH1", ComponentName::WsusSyncManager, "ch1-site");
        sync.props = vec![EmbeddedProperty::value1(crate::map::SYNC_SCHEDULE, "")];
        let row = |server: &str, role| SysResUse {
            site_code: "CH1".into(),
            role,
            nal_path: nal_path(server, "CH1"),
            nal_type: NAL_TYPE.into(),
            props: Vec::new(),
        };
        LiveSite {
            control_file: ControlFile {
                site_code: "CH1".into(),
                rows: vec![
                    row("ch1-site.corp.example.com", Role::SiteSystem),
                    row("n1.corp.example.com", Role::SiteSystem),
                    row("n1.corp.example.com", Role::SoftwareUpdatePoint),
                    row("n2.corp.example.com", Role::SiteSystem),
                    row("n2.corp.example.com", Role::SoftwareUpdatePoint),
                ],
                components: vec![wcm, sync],
                categories: vec![CategorySubscription {
                    unique_id: "Product:558f4bc3-4827-49e1-accf-ea79fd72d4c9".into(),
                    subscribed: true,
                }],
            },
            name: Some("Child one".into()),
            parent: Some("CEN".into()),
            site_server: Some("ch1-site.corp.example.com".into()),
        }
    }

    #[test]
    fn a_child_keeps_only_its_own_settings_and_its_cluster_holds_the_slot() {
        let declared = RawSite {
            code: "CH1".into(),
            mode: Some("native".into()),
            failover: Some("auto".into()),
            nlb_cluster: vec![RawNlbCluster {
                name: "sup.corp.example.com".into(),
                members: vec!["n1.corp.example.com".into(), "n2.corp.example.com".into()],
                active: Some("intranet".into()),
            }],
            site_system: vec![RawSiteSystem {
                server: "n1.corp.example.com".into(),
                install_password_env: Some("PW".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let site = import_site(&live(), Some(&declared));
        assert_eq!(site.parent.as_deref(), Some("CEN"));
        assert_eq!(site.mode.as_deref(), Some("native"));
        assert_eq!(site.failover.as_deref(), Some("auto"));
        assert_eq!(
            site.site_system
                .iter()
                .map(|s| s.server.as_str())
                .collect::<Vec<_>>(),
            ["n1.corp.example.com", "n2.corp.example.com"],
            "the site server's own row is not a SUP's site system"
        );
        assert_eq!(
            site.site_system[0].install_password_env.as_deref(),
            Some("PW")
        );
        assert!(
            site.software_update_point
                .iter()
                .all(|s| s.active.is_none())
        );
        assert_eq!(site.nlb_cluster, declared.nlb_cluster);
        let su = site.software_updates.unwrap();
        assert_eq!(su.sync_source.as_deref(), Some("upstream"));
        assert!(su.products.is_none() && su.schedule.is_none() && su.classifications.is_none());
    }

    #[test]
    fn without_a_declaration_the_provider_alone_speaks() {
        let mut l = live();
        l.parent = None;
        let site = import_site(&l, None);
        assert_eq!(site.mode, None);
        let active: Vec<_> = site
            .software_update_point
            .iter()
            .filter(|s: &&RawSoftwareUpdatePoint| s.active.is_some())
            .map(|s| s.server.as_str())
            .collect();
        assert_eq!(active, ["n1.corp.example.com"]);
        let title = sup_core::catalog::find(
            sup_core::catalog::PRODUCTS,
            "558f4bc3-4827-49e1-accf-ea79fd72d4c9",
        )
        .expect("a catalog product")
        .title;
        assert_eq!(
            site.software_updates.unwrap().products,
            Some(vec![title.to_string()])
        );
    }
}
