//! The validated domain: what a site looks like once every rule holds. Values of these types are
//! only built by `spec::validate`, so code that holds one may rely on the rules.

use crate::catalog::Entry;
use crate::schedule::SyncSchedule;
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiteMode {
    Mixed,
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    Manual,
    Auto,
}

/// What the provisioner does when a site's control file differs from its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Drift {
    /// A `DriftDetected` event and the status say so.
    #[default]
    Report,
    /// Reported, then the declared settings are committed again.
    Correct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSource {
    MicrosoftUpdate,
    Upstream,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportingEvents {
    None,
    StatusOnly,
    All,
}

/// The two active slots of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotKind {
    Intranet,
    Internet,
}

impl SlotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Intranet => "intranet",
            SlotKind::Internet => "internet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "intranet" => Some(SlotKind::Intranet),
            "internet" => Some(SlotKind::Internet),
            _ => None,
        }
    }
}

impl SiteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteMode::Mixed => "mixed",
            SiteMode::Native => "native",
        }
    }
}

/// Which IIS web site WSUS uses, recognised from the port pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsusWebSite {
    /// The default web site: 80/443.
    Default,
    /// The WSUS custom web site: 8530/8531.
    Custom,
    /// Any other pair (allowed; WSUS can be bound anywhere, but the pair must match IIS).
    Other,
}

pub fn web_site_of(http: u16, https: u16) -> WsusWebSite {
    match (http, https) {
        (80, 443) => WsusWebSite::Default,
        (8530, 8531) => WsusWebSite::Custom,
        _ => WsusWebSite::Other,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSystem {
    /// The intranet FQDN, lower case.
    pub server: String,
    pub internet_fqdn: Option<String>,
    pub computer_account_access: bool,
    pub install_account: Option<String>,
    pub install_password: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub server: String,
    pub port: u16,
    /// The proxy account and its password reference, when the proxy needs credentials.
    pub account: Option<String>,
    pub password: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareUpdatePoint {
    pub server: String,
    pub active: Option<SlotKind>,
    pub http_port: u16,
    pub https_port: u16,
    pub ssl: bool,
    pub proxy: Option<Proxy>,
    /// The General tab's choice for the active intranet SUP of a native-mode site: accept
    /// Internet-based clients too, instead of "Allow intranet-only client connections".
    pub allow_internet_clients: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlbCluster {
    /// The cluster's virtual FQDN.
    pub name: String,
    pub members: Vec<String>,
    pub active: Option<SlotKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareUpdates {
    pub sync_source: SyncSource,
    pub reporting_events: ReportingEvents,
    /// Declared on the top site of a hierarchy only: a child site, which synchronizes from its
    /// parent, inherits them (ConfigMgr 2007 hides those pages there).
    pub top: Option<TopSettings>,
}

/// The settings ConfigMgr 2007 keeps at the top of a hierarchy: the Sync Schedule,
/// Classifications, Products and Languages pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopSettings {
    pub schedule: SyncSchedule,
    pub classifications: Vec<Entry>,
    pub products: Vec<Entry>,
    /// The Languages page's "Update Files" list (`SupportedUpdateLanguages`).
    pub update_file_languages: Vec<Entry>,
    /// The Languages page's "Summary Details" list (`SupportedTitleLanguages`).
    pub summary_languages: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub code: String,
    pub name: String,
    pub mode: SiteMode,
    pub parent: Option<String>,
    pub failover: Failover,
    pub drift: Drift,
    pub software_updates: SoftwareUpdates,
    pub site_systems: Vec<SiteSystem>,
    pub software_update_points: Vec<SoftwareUpdatePoint>,
    pub nlb_clusters: Vec<NlbCluster>,
    pub site_server: Option<String>,
    /// The site's time zone: schedules fire at its wall-clock time.
    pub time_zone: Tz,
}

/// What holds a slot: one server, or an NLB cluster and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotTarget {
    pub name: String,
    pub nlb: bool,
    /// The servers whose roles are active while this target holds the slot.
    pub members: Vec<String>,
}

impl Site {
    pub fn site_system(&self, server: &str) -> Option<&SiteSystem> {
        self.site_systems.iter().find(|s| s.server == server)
    }

    pub fn sup(&self, server: &str) -> Option<&SoftwareUpdatePoint> {
        self.software_update_points
            .iter()
            .find(|s| s.server == server)
    }

    pub fn nlb(&self, name: &str) -> Option<&NlbCluster> {
        self.nlb_clusters.iter().find(|c| c.name == name)
    }

    /// The target a server name or cluster name designates in this site.
    pub fn target(&self, name: &str) -> Option<SlotTarget> {
        if let Some(c) = self.nlb(name) {
            return Some(SlotTarget {
                name: c.name.clone(),
                nlb: true,
                members: c.members.clone(),
            });
        }
        self.sup(name).map(|s| SlotTarget {
            name: s.server.clone(),
            nlb: false,
            members: vec![s.server.clone()],
        })
    }

    /// What the spec declares active in `slot`, if anything.
    pub fn declared_active(&self, slot: SlotKind) -> Option<SlotTarget> {
        if let Some(c) = self.nlb_clusters.iter().find(|c| c.active == Some(slot)) {
            return self.target(&c.name);
        }
        self.software_update_points
            .iter()
            .find(|s| s.active == Some(slot))
            .and_then(|s| self.target(&s.server))
    }

    /// The slot a server's role is declared to serve in (through itself or its NLB cluster).
    pub fn declared_slot_of(&self, server: &str) -> Option<SlotKind> {
        [SlotKind::Intranet, SlotKind::Internet]
            .into_iter()
            .find(|slot| {
                self.declared_active(*slot)
                    .is_some_and(|t| t.members.iter().any(|m| m == server))
            })
    }
}
