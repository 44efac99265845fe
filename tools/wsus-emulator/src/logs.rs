//! Writes ConfigMgr's logs as the product does: SUPSetup.log in the rolesetup format, WCM.log,
//! WSUSCtrl.log and wsyncmgr.log in the SMS trace format with the server's time-zone bias, and
//! rotation to `.lo_` at a size limit, ending with the rotation marker.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{Duration, Utc};

pub const SUPSETUP: &str = "SUPSetup.log";
pub const WCM: &str = "WCM.log";
pub const WSUSCTRL: &str = "WSUSCtrl.log";
pub const WSYNCMGR: &str = "wsyncmgr.log";

pub const WCM_COMPONENT: &str = "SMS_WSUS_CONFIGURATION_MANAGER";
pub const WSUSCTRL_COMPONENT: &str = "SMS_WSUS_CONTROL_MANAGER";
pub const WSYNCMGR_COMPONENT: &str = "SMS_WSUS_SYNC_MANAGER";

const MARKER: &str = "<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>";

/// Where logs go and how big they grow.
pub struct Logs {
    root: PathBuf,
    max_size: u64,
    /// Serializes writes and rotations (one writer per file, as in ConfigMgr).
    lock: Mutex<()>,
}

impl Logs {
    pub fn new(root: impl Into<PathBuf>, max_size: u64) -> Self {
        Self {
            root: root.into(),
            max_size,
            lock: Mutex::new(()),
        }
    }

    /// A server's `<InstallationPath>\Logs` folder.
    pub fn folder(&self, server: &str) -> PathBuf {
        self.root.join(server).join("Logs")
    }

    /// The server's local time for a bias (UTC = local + bias).
    fn local_now(bias: i32) -> chrono::NaiveDateTime {
        Utc::now().naive_utc() - Duration::minutes(i64::from(bias))
    }

    /// Appends SMS trace lines.
    pub fn sms(
        &self,
        server: &str,
        log: &str,
        component: &str,
        bias: i32,
        thread: u32,
        messages: &[String],
    ) {
        let now = Self::local_now(bias);
        let stamp = now.format("%m-%d-%Y %H:%M:%S%.3f");
        let text: String = messages
            .iter()
            .map(|m| {
                format!("{m}  $$<{component}><{stamp}{bias:+}><thread={thread} (0x{thread:X})>\r\n")
            })
            .collect();
        self.append(server, log, &text);
    }

    /// Appends rolesetup lines (local time, no zone).
    pub fn rolesetup(&self, server: &str, bias: i32, messages: &[String]) {
        let stamp = Self::local_now(bias).format("%m/%d/%y %H:%M:%S");
        let text: String = messages
            .iter()
            .map(|m| format!("<{stamp}> {m}\r\n"))
            .collect();
        self.append(server, SUPSETUP, &text);
    }

    fn append(&self, server: &str, log: &str, text: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let folder = self.folder(server);
        if let Err(e) = std::fs::create_dir_all(&folder) {
            tracing::warn!(folder = %folder.display(), error = %e, "creating a log folder");
            return;
        }
        let path = folder.join(log);
        if let Err(e) = Self::write(&path, text, self.max_size) {
            tracing::warn!(path = %path.display(), error = %e, "writing a log");
        }
    }

    fn write(path: &Path, text: &str, max_size: u64) -> std::io::Result<()> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > 0 && len + text.len() as u64 > max_size {
            // ConfigMgr's rotation: the marker ends the old file, which is copied to .lo_
            // (overwriting the previous one) and the .log starts again.
            OpenOptions::new()
                .append(true)
                .open(path)?
                .write_all(format!("{MARKER}\r\n").as_bytes())?;
            std::fs::copy(path, path.with_extension("lo_"))?;
            OpenOptions::new().write(true).truncate(true).open(path)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(text.as_bytes())
    }
}

/// `GMTDATE=` as STATMSG lines print it: `Thu Jan 16 18:53:52.608 2014`.
pub fn gmtdate() -> String {
    Utc::now().format("%a %b %d %H:%M:%S%.3f %Y").to_string()
}

/// A STATMSG echo line of SMS_WSUS_SYNC_MANAGER.
pub fn statmsg(id: u32, sev: char, site_server: &str, site: &str) -> String {
    format!(
        "STATMSG: ID={id} SEV={sev} LEV=M SOURCE=\"SMS Server\" COMP=\"SMS_WSUS_SYNC_MANAGER\" SYS={site_server} SITE={site} PID=432 TID=3404 GMTDATE={} ISTR0=\"\" ISTR1=\"\" ISTR2=\"\" ISTR3=\"\" ISTR4=\"\" ISTR5=\"\" ISTR6=\"\" ISTR7=\"\" ISTR8=\"\" ISTR9=\"\" NUMATTRS=0",
        gmtdate()
    )
}
