//! Site control file items and their embedded properties.

/// One setting of a site control item (`SMS_EmbeddedProperty`): a name and three value slots;
/// which slot a property uses is part of its definition. Names are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedProperty {
    pub name: String,
    pub value: u32,
    pub value1: String,
    pub value2: String,
}

impl EmbeddedProperty {
    pub fn value(name: &str, value: u32) -> Self {
        Self {
            name: name.into(),
            value,
            value1: String::new(),
            value2: String::new(),
        }
    }

    pub fn value1(name: &str, value1: &str) -> Self {
        Self {
            name: name.into(),
            value: 0,
            value1: value1.into(),
            value2: String::new(),
        }
    }

    pub fn value2(name: &str, value2: &str) -> Self {
        Self {
            name: name.into(),
            value: 0,
            value1: String::new(),
            value2: value2.into(),
        }
    }
}

/// The two `SMS_SCI_SysResUse` roles the procedure creates on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    SiteSystem,
    SoftwareUpdatePoint,
}

impl Role {
    /// `RoleName` (SDK "How to Configure the Software Update Point"; public scripts).
    pub fn role_name(self) -> &'static str {
        match self {
            Role::SiteSystem => "SMS Site System",
            Role::SoftwareUpdatePoint => "SMS Software Update Point",
        }
    }

    pub fn from_role_name(name: &str) -> Option<Self> {
        [Role::SiteSystem, Role::SoftwareUpdatePoint]
            .into_iter()
            .find(|r| r.role_name().eq_ignore_ascii_case(name.trim()))
    }
}

/// `NALType` of a server's rows (SDK, "How to Deploy a Site System Role").
pub const NAL_TYPE: &str = "Windows NT Server";

/// `FileType` 2, the proposed site control file every change is made in (2007 SDK cc146139).
pub const FILE_TYPE_PROPOSED: u32 = 2;

/// The network abstraction layer path of a server in a site:
/// `["Display=\\<fqdn>\"]MSWNET:["SMS_SITE=<code>"]\\<fqdn>\`.
pub fn nal_path(server: &str, site_code: &str) -> String {
    format!("[\"Display=\\\\{server}\\\"]MSWNET:[\"SMS_SITE={site_code}\"]\\\\{server}\\")
}

/// The server a NAL path names (the part after the last `]\\`, without the trailing `\`).
pub fn server_of_nal_path(nal_path: &str) -> Option<String> {
    let rest = nal_path.rsplit_once("]\\\\")?.1;
    let server = rest.trim_end_matches('\\').trim();
    (!server.is_empty()).then(|| server.to_ascii_lowercase())
}

/// One `SMS_SCI_SysResUse` row: a role on a server of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysResUse {
    pub site_code: String,
    pub role: Role,
    pub nal_path: String,
    pub nal_type: String,
    pub props: Vec<EmbeddedProperty>,
}

/// The `SMS_SCI_Component` rows of the software update point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentName {
    /// Active SUP, its ports, synchronization source, reporting level, languages.
    WsusConfigurationManager,
    /// The synchronization schedule and "Run Synchronization".
    WsusSyncManager,
}

impl ComponentName {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentName::WsusConfigurationManager => "SMS_WSUS_CONFIGURATION_MANAGER",
            ComponentName::WsusSyncManager => "SMS_WSUS_SYNC_MANAGER",
        }
    }
}

/// One `SMS_SCI_Component` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub site_code: String,
    pub name: ComponentName,
    /// `ItemName`: `<component>|<site server>` (SDK "How to Configure the WSUS Settings").
    pub item_name: String,
    pub props: Vec<EmbeddedProperty>,
}

impl Component {
    pub fn new(site_code: &str, name: ComponentName, site_server: &str) -> Self {
        Self {
            site_code: site_code.into(),
            name,
            item_name: format!("{}|{}", name.as_str(), site_server.to_ascii_uppercase()),
            props: Vec::new(),
        }
    }
}

/// A subscription of `SMS_UpdateCategoryInstance` (2007 SDK cc143654): its
/// `CategoryInstance_UniqueID` (`UpdateClassification:<guid>` or `Product:<guid>`) and
/// `IsSubscribed`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CategorySubscription {
    pub unique_id: String,
    pub subscribed: bool,
}

/// What the procedure touches in one site's control file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlFile {
    pub site_code: String,
    pub rows: Vec<SysResUse>,
    pub components: Vec<Component>,
    pub categories: Vec<CategorySubscription>,
}

/// Looks a property up by name in a list of them.
pub fn prop<'a>(props: &'a [EmbeddedProperty], name: &str) -> Option<&'a EmbeddedProperty> {
    props.iter().find(|p| p.name == name)
}

impl ControlFile {
    pub fn component(&self, name: ComponentName) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The row of `role` on `server`.
    pub fn row(&self, role: Role, server: &str) -> Option<&SysResUse> {
        self.rows.iter().find(|r| {
            r.role == role
                && server_of_nal_path(&r.nal_path).is_some_and(|s| s.eq_ignore_ascii_case(server))
        })
    }
}
