//! An SMS Provider for every site of the emulator, over WS-Management: the WMI namespace
//! `root\sms\site_<CODE>` with the classes the SUP procedure uses (`SMS_SCI_SysResUse`,
//! `SMS_SCI_Component`, `SMS_UpdateCategoryInstance`, `SMS_SiteControlFile`'s session methods),
//! and `StdRegProv` in `root\default` for each server's WSUS setup values. A site's control file
//! changes only when a session (or the global copy) is committed, and a commit drives the
//! emulated site systems as ConfigMgr's components would: a new SUP row starts setup
//! (SUPSetup.log), the components' settings reach WCM (WCM.log), `Sync Now` starts WSyncMgr.
//!
//! [`http`] carries it over WinRM: HTTP(S), NTLM, WinRM's message encryption.

pub mod commit;
pub mod http;
pub mod wql;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use sup_smsprov::wmi as sms;
use sup_wsman::envelope::{self, Message, action};
use sup_wsman::fault::{FaultSpec, code, subcode};
use sup_wsman::instance::{self, Instance, Value};
use sup_wsman::xml::esc;

use crate::state::{Emulator, Fault};

/// A site's control file: role rows and components, as instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scf {
    pub rows: Vec<Instance>,
    pub components: Vec<Instance>,
}

struct Site {
    site_server: String,
    /// `SMS_Site` of this site.
    identity: Instance,
    committed: Scf,
    /// Edits made without a session handle.
    global: Option<Scf>,
    categories: Vec<Instance>,
    /// A subscription changed since WCM last applied the settings.
    subscriptions_dirty: bool,
    seq: u64,
}

struct Session {
    working: Option<(String, Scf)>,
}

/// One commit, as the provider decided it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub site: String,
    pub seq: u64,
    /// `DefaultWSUS` after the commit (empty when none).
    pub default_wsus: String,
    /// The slot's epoch the committer names in its `ApplicationName` context value
    /// (`... (epoch N)`), when it names one.
    pub epoch: Option<u64>,
    pub at_ms: u64,
    pub accepted: bool,
}

pub struct Provider {
    pub(crate) emu: Arc<Emulator>,
    sites: Mutex<BTreeMap<String, Site>>,
    sessions: Mutex<BTreeMap<String, Session>>,
    /// Open enumerations: context → the namespace URI of their items and the items not yet
    /// pulled.
    enumerations: Mutex<BTreeMap<String, (String, VecDeque<Instance>)>>,
    journal: Mutex<Vec<Commit>>,
}

/// A reply: HTTP status and envelope.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// WBEM_E_INVALID_NAMESPACE, WBEM_E_INVALID_CLASS, WBEM_E_INVALID_QUERY, WBEM_E_INVALID_METHOD.
const WBEM_E_INVALID_NAMESPACE: u32 = 0x8004_100E;
const WBEM_E_INVALID_CLASS: u32 = 0x8004_1010;
const WBEM_E_INVALID_QUERY: u32 = 0x8004_1017;
const WBEM_E_INVALID_METHOD: u32 = 0x8004_1030;
/// WinRM's code for a fault the WMI provider reported.
const WSMAN_PROVIDER_FAULT: u32 = 2_150_859_002;
/// `HKEY_LOCAL_MACHINE` as StdRegProv takes it.
const HKLM: u32 = 0x8000_0002;
/// Where WSUS setup records its values (TechNet "Verifying WSUS Server Settings").
pub const WSUS_SETUP_KEY: &str = "SOFTWARE\\Microsoft\\Update Services\\Server\\Setup";

struct Failure {
    sender: bool,
    subcode: &'static str,
    reason: String,
    wsman_code: u32,
    wmi_code: Option<u32>,
}

fn wmi(wmi_code: u32, reason: impl Into<String>) -> Failure {
    Failure {
        sender: false,
        subcode: if wmi_code == code::WBEM_E_NOT_FOUND {
            subcode::INVALID_SELECTORS
        } else {
            subcode::INTERNAL_ERROR
        },
        reason: reason.into(),
        wsman_code: WSMAN_PROVIDER_FAULT,
        wmi_code: Some(wmi_code),
    }
}

/// The namespace and class a resource URI names.
fn target(resource_uri: &str) -> Option<(String, String)> {
    let rest = resource_uri.strip_prefix(instance::WMI_PREFIX)?;
    let (ns, class) = rest.rsplit_once('/')?;
    Some((ns.to_ascii_lowercase(), class.to_string()))
}

fn initial_scf(site: &str, site_server: &str) -> Scf {
    use sup_smsprov::map;
    let sys = map::site_system_row(
        site,
        &map::SiteSystemView {
            server: site_server,
            computer_account_access: true,
            ..Default::default()
        },
    );
    let wcm = sup_smsprov::scf::Component::new(
        site,
        sup_smsprov::scf::ComponentName::WsusConfigurationManager,
        site_server,
    );
    Scf {
        rows: vec![sms::row_to_instance(&sys)],
        components: vec![
            sms::component_to_instance(&wcm),
            sms::component_to_instance(&map::sync_component(site, site_server, "")),
        ],
    }
}

fn initial_categories() -> Vec<Instance> {
    use sup_core::catalog;
    let mut out = Vec::new();
    for (kind, table) in [
        ("UpdateClassification", catalog::CLASSIFICATIONS),
        ("Product", catalog::PRODUCTS),
    ] {
        for e in table {
            out.push(
                Instance::new(sms::CATEGORY_INSTANCE)
                    .with("AllowSubscription", "true")
                    .with("CategoryInstanceID", (out.len() + 1).to_string())
                    .with("CategoryInstance_UniqueID", format!("{kind}:{}", e.id))
                    .with("CategoryTypeName", kind)
                    .with("IsSubscribed", "false")
                    .with("LocalizedCategoryInstanceName", e.title),
            );
        }
    }
    out
}

fn item_name(i: &Instance) -> String {
    i.text("ItemName").unwrap_or_default().to_ascii_lowercase()
}

impl Provider {
    /// A provider for every site of `site_servers` (site code → site server).
    /// `details`: site code → (name, parent code or empty).
    pub fn new(
        emu: Arc<Emulator>,
        site_servers: &BTreeMap<String, String>,
        details: &BTreeMap<String, (String, String)>,
    ) -> Self {
        let sites = site_servers
            .iter()
            .map(|(code, server)| {
                let (name, parent) = details.get(code).cloned().unwrap_or_default();
                let code = code.to_ascii_uppercase();
                (
                    code.clone(),
                    Site {
                        site_server: server.to_ascii_lowercase(),
                        // SMS_Site as the SMS 2003 and later SDKs give it; Type 2 = primary,
                        // Status 1 = active.
                        identity: Instance::new("SMS_Site")
                            .with("ReportingSiteCode", parent.to_ascii_uppercase())
                            .with("ServerName", server.to_ascii_uppercase())
                            .with("SiteCode", code.clone())
                            .with("SiteName", name)
                            .with("Status", "1")
                            .with("Type", "2"),
                        committed: initial_scf(&code, server),
                        global: None,
                        categories: initial_categories(),
                        subscriptions_dirty: false,
                        seq: 0,
                    },
                )
            })
            .collect();
        Self {
            emu,
            sites: Mutex::new(sites),
            sessions: Mutex::new(BTreeMap::new()),
            enumerations: Mutex::new(BTreeMap::new()),
            journal: Mutex::new(Vec::new()),
        }
    }

    /// Every commit so far, in order.
    pub fn journal(&self) -> Vec<Commit> {
        lock(&self.journal).clone()
    }

    /// A site's committed control file.
    pub fn committed(&self, site: &str) -> Option<Scf> {
        lock(&self.sites)
            .get(&site.to_ascii_uppercase())
            .map(|s| s.committed.clone())
    }

    /// Changes a committed component setting behind the system's back, as an administrator in
    /// the console would: the `Value`, `Value1` or `Value2` slot of `property`.
    pub fn set_property(
        &self,
        site: &str,
        component: &str,
        property: &str,
        slot: &str,
        value: &str,
    ) -> Result<(), String> {
        let mut sites = lock(&self.sites);
        let s = sites
            .get_mut(&site.to_ascii_uppercase())
            .ok_or_else(|| format!("no site {site}"))?;
        let comp = s
            .committed
            .components
            .iter_mut()
            .find(|c| {
                c.text("ComponentName")
                    .is_some_and(|n| n.eq_ignore_ascii_case(component))
            })
            .ok_or_else(|| format!("no component {component} in site {site}"))?;
        let mut parsed = sms::component_from_instance(comp).ok_or("not a SUP component")?;
        let p = match parsed.props.iter_mut().find(|p| p.name == property) {
            Some(p) => p,
            None => {
                parsed
                    .props
                    .push(sup_smsprov::scf::EmbeddedProperty::value(property, 0));
                parsed.props.last_mut().ok_or("unreachable")?
            }
        };
        match slot {
            "value" => p.value = value.parse().map_err(|_| "Value is a number")?,
            "value1" => p.value1 = value.into(),
            "value2" => p.value2 = value.into(),
            other => return Err(format!("no slot {other}: value, value1 or value2")),
        }
        *comp = sms::with_props(comp.clone(), &parsed.props);
        Ok(())
    }

    /// Handles one request addressed to `host` (the machine whose WinRM was called).
    pub fn handle(self: &Arc<Self>, host: &str, msg: &Message) -> Reply {
        let h = &msg.header;
        let result = if self.emu.has_fault(host, Fault::ProviderAccessDenied) {
            Err(Failure {
                sender: true,
                subcode: subcode::ACCESS_DENIED,
                reason: "Access is denied.".into(),
                wsman_code: code::ACCESS_DENIED,
                wmi_code: None,
            })
        } else if self.emu.has_fault(host, Fault::ProviderTimeout) {
            Err(wmi(code::WBEM_E_TIMED_OUT, "The WMI operation timed out."))
        } else {
            self.dispatch(host, msg)
        };
        match result {
            Ok((action, body)) => Reply {
                status: 200,
                body: envelope::response(&action, &h.message_id, &body),
            },
            Err(f) => {
                tracing::info!(host, action = %h.action, reason = %f.reason, "provider fault");
                Reply {
                    status: 500,
                    body: envelope::response(
                        action::FAULT,
                        &h.message_id,
                        &sup_wsman::fault::render(&FaultSpec {
                            sender: f.sender,
                            subcode: f.subcode,
                            reason: &f.reason,
                            wsman_code: f.wsman_code,
                            wmi_code: f.wmi_code,
                            machine: host,
                        }),
                    ),
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, host: &str, msg: &Message) -> Result<(String, String), Failure> {
        let h = &msg.header;
        let (ns, class) = target(&h.resource_uri).ok_or_else(|| Failure {
            sender: true,
            subcode: "w:InvalidResourceURI",
            reason: format!("{} is not a WMI resource URI", h.resource_uri),
            wsman_code: 2_150_858_778,
            wmi_code: None,
        })?;
        let reply = |a: &str, body: String| Ok((action::response(a), body));
        if h.action == action::PULL {
            return reply(action::PULL, self.pull(msg));
        }
        if ns == "root/default" || ns == "root/cimv2" {
            return self.registry(host, &ns, &class, msg);
        }
        let site = ns
            .strip_prefix("root/sms/site_")
            .map(str::to_ascii_uppercase)
            .filter(|s| lock(&self.sites).contains_key(s))
            .ok_or_else(|| wmi(WBEM_E_INVALID_NAMESPACE, format!("Invalid namespace {ns}")))?;
        let session = h.option("wmi:SessionHandle").map(str::to_string);
        let ns_uri = instance::namespace_uri(&sms::namespace(&site));
        match h.action.as_str() {
            action::ENUMERATE => reply(
                action::ENUMERATE,
                self.enumerate(&site, &class, session.as_deref(), msg, &ns_uri)?,
            ),
            action::GET => {
                let i = self.find(&site, &class, session.as_deref(), h)?;
                reply(action::GET, i.to_xml(&ns_uri))
            }
            action::PUT => {
                let i = msg.payload().map(Instance::from_element).ok_or_else(|| {
                    wmi(code::WBEM_E_INVALID_PARAMETER, "Put without an instance")
                })?;
                let stored = self.put(&site, &class, session.as_deref(), h, i)?;
                reply(action::PUT, stored.to_xml(&ns_uri))
            }
            action::CREATE => {
                let i = msg.payload().map(Instance::from_element).ok_or_else(|| {
                    wmi(code::WBEM_E_INVALID_PARAMETER, "Create without an instance")
                })?;
                let selectors = self.create(&site, &class, session.as_deref(), i)?;
                reply(action::CREATE, created(&h.resource_uri, &selectors))
            }
            action::DELETE => {
                self.delete(&site, &class, session.as_deref(), h)?;
                reply(action::DELETE, String::new())
            }
            a if a.starts_with(&format!("{}/", h.resource_uri)) => {
                let method = &a[h.resource_uri.len() + 1..];
                let out = self.invoke(&site, &class, method, session.as_deref(), msg)?;
                Ok((
                    format!("{a}Response"),
                    method_output(&h.resource_uri, method, &out),
                ))
            }
            other => Err(Failure {
                sender: true,
                subcode: subcode::ACTION_NOT_SUPPORTED,
                reason: format!("The action {other} is not supported"),
                wsman_code: 2_150_858_749,
                wmi_code: None,
            }),
        }
    }

    /// The control file a request sees: its session's working copy, the global one, or the
    /// committed one.
    fn view(&self, site: &str, session: Option<&str>) -> Scf {
        if let Some(h) = session
            && let Some((s, scf)) = lock(&self.sessions).get(h).and_then(|s| s.working.clone())
            && s == site
        {
            return scf;
        }
        let sites = lock(&self.sites);
        let s = &sites[site];
        s.global.clone().unwrap_or_else(|| s.committed.clone())
    }

    fn store(&self, site: &str, session: Option<&str>, scf: Scf) {
        if let Some(h) = session
            && let Some(sess) = lock(&self.sessions).get_mut(h)
            && let Some((s, working)) = sess.working.as_mut()
            && s == site
        {
            *working = scf;
            return;
        }
        if let Some(s) = lock(&self.sites).get_mut(site) {
            s.global = Some(scf);
        }
    }

    fn collection(
        &self,
        site: &str,
        class: &str,
        session: Option<&str>,
    ) -> Result<Vec<Instance>, Failure> {
        let scf = self.view(site, session);
        if class.eq_ignore_ascii_case(sms::SYS_RES_USE) {
            Ok(scf.rows)
        } else if class.eq_ignore_ascii_case(sms::COMPONENT) {
            Ok(scf.components)
        } else if class.eq_ignore_ascii_case(sms::CATEGORY_INSTANCE) {
            Ok(lock(&self.sites)[site].categories.clone())
        } else if class.eq_ignore_ascii_case("SMS_Site") {
            Ok(vec![lock(&self.sites)[site].identity.clone()])
        } else {
            Err(wmi(WBEM_E_INVALID_CLASS, format!("Invalid class {class}")))
        }
    }

    fn enumerate(
        &self,
        site: &str,
        class: &str,
        session: Option<&str>,
        msg: &Message,
        ns_uri: &str,
    ) -> Result<String, Failure> {
        use envelope::{WSEN, WSMAN};
        let body = msg.payload();
        let filter = body.and_then(|b| b.child(WSMAN, "Filter"));
        let (class, query) = match filter {
            Some(f) => {
                let q = wql::parse(&f.text)
                    .map_err(|e| wmi(WBEM_E_INVALID_QUERY, format!("Invalid query: {e}")))?;
                (q.class.clone(), Some(q))
            }
            None => (class.to_string(), None),
        };
        let items: VecDeque<Instance> = self
            .collection(site, &class, session)?
            .into_iter()
            .filter(|i| query.as_ref().is_none_or(|q| q.matches(i)))
            .collect();
        let optimized = body
            .and_then(|b| b.child(WSMAN, "OptimizeEnumeration"))
            .is_some();
        let max = body
            .and_then(|b| {
                b.child(WSMAN, "MaxElements")
                    .or_else(|| b.child(WSEN, "MaxElements"))
            })
            .and_then(|m| m.text.parse::<usize>().ok())
            .unwrap_or(20)
            .max(1);
        let mut items = items;
        let first: Vec<Instance> = if optimized {
            let n = max.min(items.len());
            items.drain(..n).collect()
        } else {
            Vec::new()
        };
        let xml: String = first.iter().map(|i| i.to_xml(ns_uri)).collect();
        if items.is_empty() {
            return Ok(envelope::page_body(false, &xml, None, true));
        }
        let ctx = format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase());
        lock(&self.enumerations).insert(ctx.clone(), (ns_uri.to_string(), items));
        Ok(envelope::page_body(false, &xml, Some(&ctx), false))
    }

    fn pull(&self, msg: &Message) -> String {
        use envelope::WSEN;
        let body = msg.payload();
        let ctx = body
            .and_then(|b| b.child(WSEN, "EnumerationContext"))
            .map(|c| c.text.clone())
            .unwrap_or_default();
        let max = body
            .and_then(|b| b.child(WSEN, "MaxElements"))
            .and_then(|m| m.text.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let mut enums = lock(&self.enumerations);
        let Some((ns, items)) = enums.get_mut(&ctx) else {
            return envelope::page_body(true, "", None, true);
        };
        let n = max.min(items.len());
        let xml: String = items.drain(..n).map(|i| i.to_xml(ns)).collect();
        if items.is_empty() {
            enums.remove(&ctx);
            envelope::page_body(true, &xml, None, true)
        } else {
            envelope::page_body(true, &xml, Some(&ctx), false)
        }
    }

    fn find(
        &self,
        site: &str,
        class: &str,
        session: Option<&str>,
        h: &envelope::Header,
    ) -> Result<Instance, Failure> {
        let all = self.collection(site, class, session)?;
        let found = if class.eq_ignore_ascii_case(sms::CATEGORY_INSTANCE) {
            let id = h.selector("CategoryInstanceID").unwrap_or_default();
            all.into_iter()
                .find(|i| i.text("CategoryInstanceID") == Some(id))
        } else {
            let name = h
                .selector("ItemName")
                .unwrap_or_default()
                .to_ascii_lowercase();
            all.into_iter().find(|i| item_name(i) == name)
        };
        found.ok_or_else(|| wmi(code::WBEM_E_NOT_FOUND, "Not found"))
    }

    fn put(
        self: &Arc<Self>,
        site: &str,
        class: &str,
        session: Option<&str>,
        h: &envelope::Header,
        i: Instance,
    ) -> Result<Instance, Failure> {
        if class.eq_ignore_ascii_case(sms::CATEGORY_INSTANCE) {
            let id = h
                .selector("CategoryInstanceID")
                .unwrap_or_default()
                .to_string();
            let subscribed = i
                .text("IsSubscribed")
                .map(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1");
            let stored = {
                let mut sites = lock(&self.sites);
                let cats = &mut sites
                    .get_mut(site)
                    .ok_or_else(|| wmi(code::WBEM_E_NOT_FOUND, "Not found"))?
                    .categories;
                let c = cats
                    .iter_mut()
                    .find(|c| c.text("CategoryInstanceID") == Some(id.as_str()))
                    .ok_or_else(|| wmi(code::WBEM_E_NOT_FOUND, "Not found"))?;
                if let Some(sub) = subscribed {
                    if c.text("AllowSubscription") == Some("false") && sub {
                        return Err(wmi(
                            code::WBEM_E_INVALID_PARAMETER,
                            "The category does not allow subscription",
                        ));
                    }
                    let mut n = c.clone();
                    n.props.retain(|(k, _)| k != "IsSubscribed");
                    n.push("IsSubscribed", Value::Text(sub.to_string()));
                    *c = n;
                }
                c.clone()
            };
            // The subscription lives in the site database, not the control file: WCM picks it
            // up without a commit.
            self.subscriptions_changed(site);
            return Ok(stored);
        }
        let mut scf = self.view(site, session);
        let name = h
            .selector("ItemName")
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| item_name(&i));
        let list = if class.eq_ignore_ascii_case(sms::SYS_RES_USE) {
            &mut scf.rows
        } else if class.eq_ignore_ascii_case(sms::COMPONENT) {
            &mut scf.components
        } else {
            return Err(wmi(WBEM_E_INVALID_CLASS, format!("Invalid class {class}")));
        };
        let slot = list
            .iter_mut()
            .find(|x| item_name(x) == name)
            .ok_or_else(|| wmi(code::WBEM_E_NOT_FOUND, "Not found"))?;
        *slot = i.clone();
        self.store(site, session, scf);
        Ok(i)
    }

    fn create(
        &self,
        site: &str,
        class: &str,
        session: Option<&str>,
        mut i: Instance,
    ) -> Result<Vec<(String, String)>, Failure> {
        if !class.eq_ignore_ascii_case(sms::SYS_RES_USE) {
            return Err(wmi(
                WBEM_E_INVALID_CLASS,
                format!("Instances of {class} are not created here"),
            ));
        }
        let row = sms::row_from_instance(&i).ok_or_else(|| {
            wmi(
                code::WBEM_E_INVALID_PARAMETER,
                "RoleName must be \"SMS Site System\" or \"SMS Software Update Point\"",
            )
        })?;
        if row.nal_path.is_empty() || !row.site_code.eq_ignore_ascii_case(site) {
            return Err(wmi(
                code::WBEM_E_INVALID_PARAMETER,
                "NALPath and this site's SiteCode are required",
            ));
        }
        let name = sms::row_item_name(&row);
        if i.text("ItemName").is_none() {
            i.push("ItemName", Value::Text(name.clone()));
        }
        let mut scf = self.view(site, session);
        if scf
            .rows
            .iter()
            .any(|r| item_name(r) == name.to_ascii_lowercase())
        {
            return Err(Failure {
                sender: true,
                subcode: subcode::ALREADY_EXISTS,
                reason: format!("{name} already exists"),
                wsman_code: WSMAN_PROVIDER_FAULT,
                wmi_code: Some(code::WBEM_E_ALREADY_EXISTS),
            });
        }
        scf.rows.push(i);
        self.store(site, session, scf);
        Ok(sms::row_selectors(&row))
    }

    fn delete(
        &self,
        site: &str,
        class: &str,
        session: Option<&str>,
        h: &envelope::Header,
    ) -> Result<(), Failure> {
        if !class.eq_ignore_ascii_case(sms::SYS_RES_USE) {
            return Err(wmi(
                WBEM_E_INVALID_CLASS,
                format!("Instances of {class} are not deleted here"),
            ));
        }
        let name = h
            .selector("ItemName")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut scf = self.view(site, session);
        let before = scf.rows.len();
        scf.rows.retain(|r| item_name(r) != name);
        if scf.rows.len() == before {
            return Err(wmi(code::WBEM_E_NOT_FOUND, "Not found"));
        }
        self.store(site, session, scf);
        Ok(())
    }

    fn invoke(
        self: &Arc<Self>,
        site: &str,
        class: &str,
        method: &str,
        session: Option<&str>,
        msg: &Message,
    ) -> Result<Vec<(String, String)>, Failure> {
        if !class.eq_ignore_ascii_case(sms::SITE_CONTROL_FILE) {
            return Err(wmi(
                WBEM_E_INVALID_METHOD,
                format!("{class} has no method {method} here"),
            ));
        }
        let param = |name: &str| {
            msg.payload()
                .and_then(|p| p.child_local(name))
                .map(|e| e.text.clone())
                .unwrap_or_default()
        };
        let ok = |extra: Vec<(String, String)>| {
            let mut out = extra;
            out.push(("ReturnValue".into(), "0".into()));
            Ok(out)
        };
        match method {
            "GetSessionHandle" => {
                let handle = format!("{{{}}}", uuid::Uuid::new_v4().to_string().to_uppercase());
                lock(&self.sessions).insert(handle.clone(), Session { working: None });
                ok(vec![("SessionHandle".into(), handle)])
            }
            "ReleaseSessionHandle" => {
                let handle = param("SessionHandle");
                lock(&self.sessions).remove(&handle);
                ok(Vec::new())
            }
            "RefreshSCF" => {
                let code = param("SiteCode").to_ascii_uppercase();
                if code != site {
                    return Err(wmi(
                        code::WBEM_E_INVALID_PARAMETER,
                        format!("SiteCode {code} is not this namespace's site"),
                    ));
                }
                let fresh = lock(&self.sites)[site].committed.clone();
                match session.and_then(|h| {
                    lock(&self.sessions)
                        .get_mut(h)
                        .map(|s| s.working = Some((site.to_string(), fresh.clone())))
                }) {
                    Some(()) => {}
                    None => {
                        if let Some(s) = lock(&self.sites).get_mut(site) {
                            s.global = Some(fresh);
                        }
                    }
                }
                ok(Vec::new())
            }
            "CommitSCF" => {
                let code = param("SiteCode").to_ascii_uppercase();
                if code != site {
                    return Err(wmi(
                        code::WBEM_E_INVALID_PARAMETER,
                        format!("SiteCode {code} is not this namespace's site"),
                    ));
                }
                let epoch = msg.header.option("wmi:ApplicationName").and_then(epoch_of);
                self.commit(site, session, epoch)?;
                ok(Vec::new())
            }
            other => Err(wmi(
                WBEM_E_INVALID_METHOD,
                format!("SMS_SiteControlFile has no method {other}"),
            )),
        }
    }

    /// `StdRegProv` on `host`: the WSUS setup values of the emulated server.
    fn registry(
        &self,
        host: &str,
        ns: &str,
        class: &str,
        msg: &Message,
    ) -> Result<(String, String), Failure> {
        let h = &msg.header;
        let method = h
            .action
            .strip_prefix(&format!("{}/", h.resource_uri))
            .ok_or_else(|| {
                wmi(
                    WBEM_E_INVALID_METHOD,
                    format!("only methods of StdRegProv are served in {ns}"),
                )
            })?;
        if !class.eq_ignore_ascii_case("StdRegProv") {
            return Err(wmi(WBEM_E_INVALID_CLASS, format!("Invalid class {class}")));
        }
        let param = |name: &str| {
            msg.payload()
                .and_then(|p| p.child_local(name))
                .map(|e| e.text.clone())
                .unwrap_or_default()
        };
        // ERROR_FILE_NOT_FOUND: the value (or key) does not exist.
        let missing = vec![("ReturnValue".to_string(), "2".to_string())];
        // A server this emulator has not met is learned, with the default ports, as the agent
        // learns the servers it is asked about; a site server or an address stands in for none.
        let site_server = lock(&self.sites).values().any(|s| s.site_server == host);
        if self.emu.get(host).is_none()
            && !self.emu.strict_hosts
            && !site_server
            && host.parse::<std::net::IpAddr>().is_err()
            && host.contains('.')
        {
            self.emu.add_server(host, None, None, None);
        }
        let server = self.emu.get(host);
        let key_ok = param("hDefKey").parse::<u32>().ok() == Some(HKLM)
            && param("sSubKeyName")
                .trim_matches('\\')
                .eq_ignore_ascii_case(WSUS_SETUP_KEY);
        let value = param("sValueName");
        let out = match (
            server.filter(|s| key_ok && !s.faults.contains(&Fault::NoWsus)),
            method,
        ) {
            (Some(s), "GetStringValue") if value.eq_ignore_ascii_case("VersionString") => {
                vec![
                    ("sValue".into(), s.wsus_version.clone()),
                    ("ReturnValue".into(), "0".into()),
                ]
            }
            (Some(s), "GetDWORDValue") if value.eq_ignore_ascii_case("PortNumber") => {
                vec![
                    ("uValue".into(), s.http_port.to_string()),
                    ("ReturnValue".into(), "0".into()),
                ]
            }
            (Some(s), "GetDWORDValue") if value.eq_ignore_ascii_case("UsingSSL") => {
                vec![
                    ("uValue".into(), u32::from(s.ssl).to_string()),
                    ("ReturnValue".into(), "0".into()),
                ]
            }
            (_, "GetStringValue" | "GetDWORDValue") => missing,
            (_, other) => {
                return Err(wmi(
                    WBEM_E_INVALID_METHOD,
                    format!("StdRegProv has no method {other} here"),
                ));
            }
        };
        Ok((
            format!("{}Response", h.action),
            method_output(&h.resource_uri, method, &out),
        ))
    }
}

fn method_output(class_uri: &str, method: &str, out: &[(String, String)]) -> String {
    let mut s = format!("<p:{method}_OUTPUT xmlns:p=\"{}\">", esc(class_uri));
    for (k, v) in out {
        s.push_str(&format!("<p:{k}>{}</p:{k}>", esc(v)));
    }
    s.push_str(&format!("</p:{method}_OUTPUT>"));
    s
}

fn created(resource_uri: &str, selectors: &[(String, String)]) -> String {
    let mut s = format!(
        "<wxf:ResourceCreated xmlns:wxf=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\">\
         <wsa:Address>{}</wsa:Address><wsa:ReferenceParameters><wsman:ResourceURI>{}</wsman:ResourceURI><wsman:SelectorSet>",
        envelope::ANONYMOUS,
        esc(resource_uri)
    );
    for (k, v) in selectors {
        s.push_str(&format!(
            "<wsman:Selector Name=\"{}\">{}</wsman:Selector>",
            esc(k),
            esc(v)
        ));
    }
    s.push_str("</wsman:SelectorSet></wsa:ReferenceParameters></wxf:ResourceCreated>");
    s
}

#[cfg(test)]
mod tests;

/// The epoch an `ApplicationName` such as `SUP control plane (epoch 17)` names.
pub fn epoch_of(application_name: &str) -> Option<u64> {
    let rest = application_name.split("(epoch ").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}
