//! The milestones the SUP procedure waits for, found in log records. The names are a contract
//! that other services and scripts read:
//!
//! | name | where | line |
//! |---|---|---|
//! | `role_install_started` | SUPSetup.log | `SMSWSUS Setup Started` |
//! | `role_install_succeeded` | SUPSetup.log | `Installation was successful` |
//! | `role_install_failed` | SUPSetup.log | `~RoleSetup().` with no success line since the start, or an explicit failure line |
//! | `wsus_config_state` | WCM.log | `Setting new configuration state to N (NAME)` |
//! | `wsus_connected` | WCM.log, WSUSCtrl.log | `Successfully connected to server: X, port: P, useSSL: B`, `… to local WSUS server` |
//! | `wsus_components_healthy` | WCM.log, WSUSCtrl.log | `There are no unhealthy WSUS Server components on WSUS Server X` |
//! | `wsus_database_ok` | WCM.log, WSUSCtrl.log | `Successfully checked database connection on WSUS server X` |
//! | `sync_started` | wsyncmgr.log | `Starting Sync`, `STATMSG: ID=6701` |
//! | `sync_wsus_done` | wsyncmgr.log | `Done synchronizing WSUS Server X` |
//! | `sync_succeeded` | wsyncmgr.log | `Done synchronizing SMS with WSUS Server X`, `STATMSG: ID=6702` |
//! | `sync_failed` | wsyncmgr.log | `Sync failed…`, `STATMSG: ID=6703` |
//! | `log_rotated` | any | the rotation marker |

use chrono::{NaiveDateTime, SecondsFormat};

use memchr::memmem::Finder;

use crate::parse::{Format, Record, RecordRef};

/// A milestone, as its readers match on it. Its name (`as_str`) is what travels in
/// `MilestoneObserved.name` and what `sup-logwatch parse --json` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MilestoneKind {
    RoleInstallStarted,
    RoleInstallSucceeded,
    RoleInstallFailed,
    WsusConfigState,
    WsusConnected,
    WsusComponentsHealthy,
    WsusDatabaseOk,
    SyncStarted,
    SyncWsusDone,
    SyncSucceeded,
    SyncFailed,
    LogRotated,
}

impl MilestoneKind {
    /// Every milestone.
    pub const ALL: [MilestoneKind; 12] = [
        Self::RoleInstallStarted,
        Self::RoleInstallSucceeded,
        Self::RoleInstallFailed,
        Self::WsusConfigState,
        Self::WsusConnected,
        Self::WsusComponentsHealthy,
        Self::WsusDatabaseOk,
        Self::SyncStarted,
        Self::SyncWsusDone,
        Self::SyncSucceeded,
        Self::SyncFailed,
        Self::LogRotated,
    ];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RoleInstallStarted => "role_install_started",
            Self::RoleInstallSucceeded => "role_install_succeeded",
            Self::RoleInstallFailed => "role_install_failed",
            Self::WsusConfigState => "wsus_config_state",
            Self::WsusConnected => "wsus_connected",
            Self::WsusComponentsHealthy => "wsus_components_healthy",
            Self::WsusDatabaseOk => "wsus_database_ok",
            Self::SyncStarted => "sync_started",
            Self::SyncWsusDone => "sync_wsus_done",
            Self::SyncSucceeded => "sync_succeeded",
            Self::SyncFailed => "sync_failed",
            Self::LogRotated => "log_rotated",
        }
    }

    /// The milestone a wire name names; `None` for a name this version does not know (a newer
    /// log watcher's), which readers skip.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for MilestoneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const ROLE_INSTALL_STARTED: &str = MilestoneKind::RoleInstallStarted.as_str();
pub const ROLE_INSTALL_SUCCEEDED: &str = MilestoneKind::RoleInstallSucceeded.as_str();
pub const ROLE_INSTALL_FAILED: &str = MilestoneKind::RoleInstallFailed.as_str();
pub const WSUS_CONFIG_STATE: &str = MilestoneKind::WsusConfigState.as_str();
pub const WSUS_CONNECTED: &str = MilestoneKind::WsusConnected.as_str();
pub const WSUS_COMPONENTS_HEALTHY: &str = MilestoneKind::WsusComponentsHealthy.as_str();
pub const WSUS_DATABASE_OK: &str = MilestoneKind::WsusDatabaseOk.as_str();
pub const SYNC_STARTED: &str = MilestoneKind::SyncStarted.as_str();
pub const SYNC_WSUS_DONE: &str = MilestoneKind::SyncWsusDone.as_str();
pub const SYNC_SUCCEEDED: &str = MilestoneKind::SyncSucceeded.as_str();
pub const SYNC_FAILED: &str = MilestoneKind::SyncFailed.as_str();
pub const LOG_ROTATED: &str = MilestoneKind::LogRotated.as_str();

/// Every milestone name.
pub const ALL: [&str; 12] = [
    ROLE_INSTALL_STARTED,
    ROLE_INSTALL_SUCCEEDED,
    ROLE_INSTALL_FAILED,
    WSUS_CONFIG_STATE,
    WSUS_CONNECTED,
    WSUS_COMPONENTS_HEALTHY,
    WSUS_DATABASE_OK,
    SYNC_STARTED,
    SYNC_WSUS_DONE,
    SYNC_SUCCEEDED,
    SYNC_FAILED,
    LOG_ROTATED,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    pub name: &'static str,
    /// Extracted values (`server`, `port`, `use_ssl`, `state`, `state_name`, `statmsg_id`, `sev`,
    /// `gmtdate`, `reason`, …) and `log`, the file the line came from.
    pub fields: Vec<(&'static str, String)>,
}

impl Milestone {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Classifies records of one log file. It keeps the little state that `role_install_failed`
/// needs (was there a success since setup started?), which the caller persists with the read
/// position via [`Classifier::state`] / [`Classifier::restore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classifier {
    setup_open: bool,
    setup_succeeded: bool,
    setup_failed: bool,
    last_error: Option<String>,
    /// The item count of the last "processed N out of M items" line of a synchronization, reported
    /// with its end.
    sync_items: Option<u64>,
}

/// What follows the first `phrase` in `message`.
fn after<'a>(message: &'a str, phrase: &Finder<'_>) -> Option<&'a str> {
    let at = phrase.find(message.as_bytes())?;
    message.get(at + phrase.needle().len()..)
}

fn contains(message: &str, phrase: &Finder<'_>) -> bool {
    phrase.find(message.as_bytes()).is_some()
}

/// The phrases the classifier's tests look for, each with its searcher built once: `str::find`
/// builds a searcher at every call, which costs more than the search on a line.
struct Phrases {
    setup_started: Finder<'static>,
    installation_successful: Finder<'static>,
    role_setup_end: Finder<'static>,
    installation_failed: Finder<'static>,
    setup_failed: Finder<'static>,
    config_state: Finder<'static>,
    connected_to_server: Finder<'static>,
    connected_to_local: Finder<'static>,
    /// [`CASE_FREE_PHRASES`] in lower case, searched for in a folded line.
    components_healthy: Finder<'static>,
    database_ok: Finder<'static>,
    sms_sync_done: Finder<'static>,
    updates_processed: Finder<'static>,
    out_of: Finder<'static>,
    wsus_sync_done: Finder<'static>,
}

static PHRASES: std::sync::LazyLock<Phrases> = std::sync::LazyLock::new(|| {
    let lower = |phrase: &str| Finder::new(phrase.to_ascii_lowercase().as_bytes()).into_owned();
    Phrases {
        setup_started: Finder::new(SETUP_STARTED.as_bytes()),
        installation_successful: Finder::new(INSTALLATION_SUCCESSFUL.as_bytes()),
        role_setup_end: Finder::new(ROLE_SETUP_END.as_bytes()),
        installation_failed: Finder::new(INSTALLATION_FAILED.as_bytes()),
        setup_failed: Finder::new(SETUP_FAILED.as_bytes()),
        config_state: Finder::new(CONFIG_STATE.as_bytes()),
        connected_to_server: Finder::new("Successfully connected to server: "),
        connected_to_local: Finder::new("Successfully connected to local WSUS server"),
        components_healthy: lower(CASE_FREE_PHRASES[0]),
        database_ok: lower(CASE_FREE_PHRASES[1]),
        sms_sync_done: Finder::new("Done synchronizing SMS with WSUS Server "),
        updates_processed: Finder::new(UPDATES_PROCESSED.as_bytes()),
        out_of: Finder::new(" out of "),
        wsus_sync_done: Finder::new("Done synchronizing WSUS Server "),
    }
});

/// The server name at the start of `s` (up to whitespace, trailing dot or comma dropped).
fn server_name(s: &str) -> Option<String> {
    let name = s.split_whitespace().next()?.trim_end_matches(['.', ',']);
    (!name.is_empty()).then(|| name.to_string())
}

fn statmsg_field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    let at = message.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &message[at..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.find('"').map(|e| &q[..e]);
    }
    Some(rest.split_whitespace().next().unwrap_or(""))
}

/// `GMTDATE=Thu Jan 16 18:57:46.304 2014` → RFC 3339 UTC.
fn gmtdate(message: &str) -> Option<String> {
    let at = message.find("GMTDATE=")? + "GMTDATE=".len();
    let parts: Vec<&str> = message[at..].split_whitespace().take(5).collect();
    if parts.len() < 5 {
        return None;
    }
    let text = format!("{} {} {} {}", parts[1], parts[2], parts[3], parts[4]);
    let t = NaiveDateTime::parse_from_str(&text, "%b %d %H:%M:%S%.f %Y").ok()?;
    Some(t.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true))
}

// Phrases both a trigger and one of the classifier's exact tests.
const SETUP_STARTED: &str = "Setup Started";
const INSTALLATION_SUCCESSFUL: &str = "Installation was successful";
const ROLE_SETUP_END: &str = "~RoleSetup()";
const INSTALLATION_FAILED: &str = "Installation failed";
const SETUP_FAILED: &str = "Setup failed";
const CONFIG_STATE: &str = "Setting new configuration state to ";
const UPDATES_PROCESSED: &str = "updates, processed";

/// Every phrase that can make a line a milestone (or feed one), searched in one pass: most lines
/// match none and are done with after it.
pub(crate) const TRIGGER_PHRASES: [&str; 12] = [
    SETUP_STARTED,
    INSTALLATION_SUCCESSFUL,
    ROLE_SETUP_END,
    INSTALLATION_FAILED,
    SETUP_FAILED,
    CONFIG_STATE,
    "Successfully connected to",
    "STATMSG: ",
    "Starting Sync",
    "Done synchronizing",
    "Sync failed",
    UPDATES_PROCESSED,
];

/// The two WSUS health lines the procedure names. No source prints them verbatim from a 2007
/// log, and their letter case differs between the documentation and later versions ("WSUS
/// Server" / "WSUS server"), so they are matched in any ASCII case.
pub(crate) const CASE_FREE_PHRASES: [&str; 2] = [
    "There are no unhealthy WSUS Server components on WSUS Server ",
    "Successfully checked database connection on WSUS server ",
];

/// The piece of a trigger phrase a search looks for: the phrase itself, unless its first bytes
/// are common in ordinary lines. The SIMD search proposes a candidate wherever a needle's first
/// bytes occur, so `Sync failed` would stop at every `Synchronizing update …` line. All needles
/// are ASCII, so finding them in the raw bytes is the same as finding them in the decoded text of
/// a UTF-8 or Windows-1252 line.
pub(crate) fn needle(phrase: &'static str) -> &'static str {
    match phrase {
        "Sync failed" => "ync failed",
        "updates, processed" => "s, processed",
        other => other,
    }
}

/// A piece every one of the [`CASE_FREE_PHRASES`] holds (in "… on WSUS server"), searched for in
/// every ASCII letter case. An ASCII-case-insensitive automaton gets no SIMD prefilter, and
/// folding each read to lower case first costs a pass over its bytes; the piece's case variants
/// instead share one bucket of the SIMD search (they differ only in the high half of their
/// letters' bytes). Few other lines hold it (a WCM.log error such as "Remote configuration failed
/// on WSUS Server"), and a line that does is only a candidate for the classifier's exact tests.
pub(crate) const CASE_FREE_PIECE: &str = "on ws";

/// `piece` in every ASCII letter case: 2ⁿ strings for n letters.
fn case_variants(piece: &str) -> Vec<String> {
    let mut variants = vec![String::new()];
    for c in piece.chars() {
        let cases: &[char] = if c.is_ascii_alphabetic() {
            &[c.to_ascii_lowercase(), c.to_ascii_uppercase()]
        } else {
            &[c]
        };
        variants = variants
            .iter()
            .flat_map(|v| cases.iter().map(move |c| format!("{v}{c}")))
            .collect();
    }
    variants
}

/// What every search for milestone lines looks for, in the bytes as written: the needle of every
/// trigger phrase (which the classifier matches as written), [`CASE_FREE_PIECE`] in every case,
/// the rotation marker and the start of a CMTrace record (not milestones: the buffer scan hands
/// such text to the line-by-line path). Text that holds none of them holds no trigger phrase;
/// text that holds one may still be nothing, which the classifier's exact tests decide. One
/// automaton serves the buffer scan, the reader's candidate lines and the classifier's own test.
pub(crate) fn candidate_needles() -> impl Iterator<Item = String> {
    TRIGGER_PHRASES
        .into_iter()
        .map(needle)
        .chain([crate::parse::ROTATION_MARKER, crate::parse::CMTRACE_OPEN])
        .map(str::to_string)
        .chain(case_variants(CASE_FREE_PIECE))
}

/// [`candidate_needles`] built once; `None` if it could not be built (every line is then a
/// candidate).
pub(crate) static CANDIDATES: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        // Leftmost-first (any match will do) lets the packed (SIMD) prefilter run.
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(candidate_needles())
            .ok()
    });

/// `message` in ASCII lower case, handed to `f`: folded on the stack when it is short, so most
/// lines cost no allocation. ASCII lower-casing keeps every byte offset.
fn with_folded<T>(message: &str, f: impl FnOnce(&[u8]) -> T) -> T {
    let mut stack = [0u8; 512];
    match stack.get_mut(..message.len()) {
        Some(folded) => {
            folded.copy_from_slice(message.as_bytes());
            folded.make_ascii_lowercase();
            f(folded)
        }
        None => f(&message.to_ascii_lowercase().into_bytes()),
    }
}

/// What follows `phrase` (a lower-case searcher) in `message`, the phrase matched in any ASCII
/// case: the offset found in the folded text holds in the original.
fn after_any_case<'a>(message: &'a str, phrase: &Finder<'_>) -> Option<&'a str> {
    let at = with_folded(message, |folded| phrase.find(folded))?;
    message.get(at + phrase.needle().len()..)
}

/// Whether `message` may hold a trigger phrase: the one search most lines get.
fn may_trigger(message: &str) -> bool {
    CANDIDATES
        .as_ref()
        .is_none_or(|needles| needles.is_match(message))
}

fn looks_like_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("error") || (m.contains("fail") && !m.contains("failover"))
}

impl Classifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inside a role setup (started, not yet ended): every line may matter, since an error line
    /// becomes the reason of a later `role_install_failed`.
    pub fn in_setup(&self) -> bool {
        self.setup_open
    }

    /// A compact form of the state to persist with the read position.
    pub fn state(&self) -> String {
        format!(
            "{}{}{}",
            u8::from(self.setup_open),
            u8::from(self.setup_succeeded),
            u8::from(self.setup_failed)
        )
    }

    /// Restores a state saved by [`Classifier::state`]; anything else gives a fresh classifier.
    pub fn restore(state: &str) -> Self {
        let b = state.as_bytes();
        if b.len() != 3 || !b.iter().all(|c| *c == b'0' || *c == b'1') {
            return Self::default();
        }
        Self {
            setup_open: b[0] == b'1',
            setup_succeeded: b[1] == b'1',
            setup_failed: b[2] == b'1',
            last_error: None,
            sync_items: None,
        }
    }

    /// The milestone in `record`, if any. `log` is the file name, recorded in the fields.
    pub fn classify(&mut self, record: &Record, log: &str) -> Option<Milestone> {
        self.classify_record(&record.borrowed(), log)
    }

    /// The milestone in a borrowed record, if any: [`Classifier::classify`] without an owned
    /// record. Outside a role setup, a line of up to 512 bytes that is no milestone costs no
    /// allocation.
    pub fn classify_record(&mut self, record: &RecordRef<'_>, log: &str) -> Option<Milestone> {
        let m = self.classify_inner(record)?;
        let mut fields = m.1;
        fields.push(("log", log.to_string()));
        Some(Milestone { name: m.0, fields })
    }

    fn classify_inner(
        &mut self,
        record: &RecordRef<'_>,
    ) -> Option<(&'static str, Vec<(&'static str, String)>)> {
        if record.format == Format::Marker {
            return Some((LOG_ROTATED, Vec::new()));
        }
        let msg = record.message;
        if msg.is_empty() {
            return None;
        }
        if !may_trigger(msg) {
            if self.setup_open && looks_like_error(msg) {
                self.last_error = Some(msg.to_string());
            }
            return None;
        }
        let phrases = &*PHRASES;
        // SUPSetup.log.
        if contains(msg, &phrases.setup_started) {
            self.setup_open = true;
            self.setup_succeeded = false;
            self.setup_failed = false;
            self.last_error = None;
            let role = msg.split_whitespace().next().unwrap_or("").to_string();
            return Some((ROLE_INSTALL_STARTED, vec![("role", role)]));
        }
        if contains(msg, &phrases.installation_successful) {
            self.setup_succeeded = true;
            return Some((ROLE_INSTALL_SUCCEEDED, Vec::new()));
        }
        if contains(msg, &phrases.role_setup_end) {
            let failed = self.setup_open && !self.setup_succeeded && !self.setup_failed;
            self.setup_open = false;
            if failed {
                self.setup_failed = true;
                let reason = self.last_error.take().unwrap_or_else(|| {
                    "setup ended without \"Installation was successful\"".into()
                });
                return Some((ROLE_INSTALL_FAILED, vec![("reason", reason)]));
            }
            return None;
        }
        if self.setup_open
            && (contains(msg, &phrases.installation_failed) || contains(msg, &phrases.setup_failed))
        {
            self.setup_failed = true;
            return Some((ROLE_INSTALL_FAILED, vec![("reason", msg.to_string())]));
        }
        // WCM.log / WSUSCtrl.log.
        if let Some(rest) = after(msg, &phrases.config_state) {
            let (num, name) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = name.trim().trim_start_matches('(').trim_end_matches(')');
            return Some((
                WSUS_CONFIG_STATE,
                vec![
                    ("state", num.trim().to_string()),
                    ("state_name", name.to_string()),
                ],
            ));
        }
        if let Some(rest) = after(msg, &phrases.connected_to_server) {
            let mut fields = Vec::new();
            let mut parts = rest.split(',');
            if let Some(server) = parts.next() {
                fields.push(("server", server.trim().to_string()));
            }
            for p in parts {
                if let Some((k, v)) = p.split_once(':') {
                    match k.trim() {
                        "port" => fields.push(("port", v.trim().to_string())),
                        "useSSL" => fields.push(("use_ssl", v.trim().to_ascii_lowercase())),
                        _ => {}
                    }
                }
            }
            return Some((WSUS_CONNECTED, fields));
        }
        if contains(msg, &phrases.connected_to_local) {
            return Some((WSUS_CONNECTED, vec![("local", "true".into())]));
        }
        if let Some(rest) = after_any_case(msg, &phrases.components_healthy) {
            return Some((
                WSUS_COMPONENTS_HEALTHY,
                server_name(rest)
                    .map(|s| vec![("server", s)])
                    .unwrap_or_default(),
            ));
        }
        if let Some(rest) = after_any_case(msg, &phrases.database_ok) {
            return Some((
                WSUS_DATABASE_OK,
                server_name(rest)
                    .map(|s| vec![("server", s)])
                    .unwrap_or_default(),
            ));
        }
        // wsyncmgr.log.
        if msg.starts_with("STATMSG: ") {
            let id = statmsg_field(msg, "ID").unwrap_or("");
            let name = match id {
                "6701" => SYNC_STARTED,
                "6702" => SYNC_SUCCEEDED,
                "6703" => SYNC_FAILED,
                _ => return None,
            };
            let mut fields = vec![("statmsg_id", id.to_string())];
            match name {
                SYNC_STARTED => self.sync_items = None,
                // The cycle's end carries its item count too: a cycle that goes on after the
                // site database (a downstream WSUS) ends here, not at "Done synchronizing SMS".
                SYNC_SUCCEEDED => {
                    if let Some(n) = self.sync_items.take() {
                        fields.push(("updates", n.to_string()));
                    }
                }
                _ => {}
            }
            // The message's severity as the status message carries it: I, W or E.
            if let Some(sev) = statmsg_field(msg, "SEV") {
                fields.push(("sev", sev.to_string()));
            }
            if let Some(site) = statmsg_field(msg, "SITE") {
                fields.push(("site", site.to_string()));
            }
            if let Some(sys) = statmsg_field(msg, "SYS") {
                fields.push(("server", sys.to_string()));
            }
            if let Some(g) = gmtdate(msg) {
                fields.push(("gmtdate", g));
            }
            return Some((name, fields));
        }
        if msg.starts_with("Starting Sync") {
            return Some((SYNC_STARTED, Vec::new()));
        }
        if let Some(rest) = after(msg, &phrases.sms_sync_done) {
            let mut fields: Vec<(&'static str, String)> = server_name(rest)
                .map(|s| vec![("server", s)])
                .unwrap_or_default();
            if let Some(n) = self.sync_items {
                fields.push(("updates", n.to_string()));
            }
            return Some((SYNC_SUCCEEDED, fields));
        }
        if msg.starts_with("sync: ")
            && contains(msg, &phrases.updates_processed)
            && let Some(rest) = after(msg, &phrases.out_of)
            && let Some(total) = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        {
            self.sync_items = Some(total);
            return None;
        }
        if let Some(rest) = after(msg, &phrases.wsus_sync_done) {
            return Some((
                SYNC_WSUS_DONE,
                server_name(rest)
                    .map(|s| vec![("server", s)])
                    .unwrap_or_default(),
            ));
        }
        if msg.starts_with("Sync failed") {
            let reason = msg
                .trim_start_matches("Sync failed")
                .trim_start_matches([':', '.'])
                .trim()
                .to_string();
            return Some((SYNC_FAILED, vec![("reason", reason)]));
        }
        if self.setup_open && looks_like_error(msg) {
            self.last_error = Some(msg.to_string());
        }
        None
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn every_kind_is_read_back_from_its_wire_name() {
        for kind in MilestoneKind::ALL {
            assert_eq!(MilestoneKind::from_name(kind.as_str()), Some(kind));
        }
        let names: Vec<&str> = MilestoneKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ALL);
        assert_eq!(
            MilestoneKind::from_name("sync_paused_by_a_newer_watcher"),
            None
        );
    }
}
