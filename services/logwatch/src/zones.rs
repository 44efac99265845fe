//! The time zone of each server's lines that carry none (SUPSetup.log's rolesetup stamps).
//!
//! A bias configured for the server, or under `*`, is used as it is. Without one, the server's
//! own lines say: the latest line read from its folder that carries a bias (WSUSCtrl.log on a
//! SUP, WCM.log on a site server; one machine, one clock). Before any such line (a SUP whose
//! first lines are its setup's), the file itself says: its last line's local stamp against the
//! time the server last wrote it ([`sup_smslog::zone`]), read again whenever new zone-less lines
//! are read. When neither tells, the bias the file last told for the same server is used.
//! Without a time, a setup start cannot be told apart from the checks around it, and the
//! coordinator has to drop every check it holds for the role.

use std::collections::BTreeMap;
use std::path::Path;

use sup_smslog::{Format, Record};

pub struct Zones {
    configured: BTreeMap<String, i32>,
    /// The bias of the latest line with one, per server.
    written: BTreeMap<String, i32>,
    /// The bias a zone-less file last told, per server.
    learned: BTreeMap<String, i32>,
}

impl Zones {
    pub fn new(configured: BTreeMap<String, i32>) -> Self {
        Self {
            configured,
            written: BTreeMap::new(),
            learned: BTreeMap::new(),
        }
    }

    /// The bias configured for `server`: its own, else the default under `*`.
    pub fn configured(&self, server: &str) -> Option<i32> {
        self.configured
            .get(server)
            .or_else(|| self.configured.get("*"))
            .copied()
    }

    /// Notes the bias of the records read from `path` (a log of `server`) that carry one, and
    /// gives those that carry none the server's bias: the one its lines carry, else the one the
    /// file tells, else the one it last told.
    pub fn place<'a>(
        &mut self,
        server: &str,
        path: &Path,
        records: impl IntoIterator<Item = &'a mut Record>,
    ) {
        let mut zoneless: Vec<&mut Record> = Vec::new();
        for r in records {
            match (r.format, r.bias) {
                (Format::RoleSetup, None) => zoneless.push(r),
                (Format::Sms | Format::CmTrace, Some(bias)) => {
                    self.written.insert(server.to_string(), bias);
                }
                _ => {}
            }
        }
        if zoneless.is_empty() {
            return;
        }
        let bias = self
            .written
            .get(server)
            .copied()
            .or_else(|| self.told(server, path))
            .or_else(|| self.learned.get(server).copied());
        let Some(bias) = bias else {
            tracing::warn!(
                server,
                path = %path.display(),
                lines = zoneless.len(),
                "lines without a time zone, none configured for the server ([tz_bias]) and none read from its logs: their milestones have no time"
            );
            return;
        };
        for r in &mut zoneless {
            r.bias = Some(bias);
        }
    }

    /// The bias the file at `path` tells, remembered for `server`.
    fn told(&mut self, server: &str, path: &Path) -> Option<i32> {
        let told = sup_smslog::zone::file_zone_bias(path).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "reading a log's last write for its time zone");
            None
        })?;
        if self.learned.insert(server.to_string(), told) != Some(told) {
            tracing::info!(
                server,
                bias = told,
                path = %path.display(),
                "time-zone bias read from the last line of a log whose lines carry no zone"
            );
        }
        Some(told)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, NaiveDateTime};
    use std::io::Write as _;

    fn stamped(t: NaiveDateTime, message: &str) -> String {
        format!("{} {message}\r\n", t.format("<%m/%d/%y %H:%M:%S>"))
    }

    fn written_at(path: &Path, t: NaiveDateTime) {
        std::fs::File::options()
            .append(true)
            .open(path)
            .and_then(|f| f.set_modified(t.and_utc().into()))
            .expect("mtime set");
    }

    fn parsed(text: &str) -> Vec<Record> {
        text.lines()
            .map(|l| sup_smslog::parse_line(l, None))
            .collect()
    }

    /// A SUPSetup.log in `dir` whose one line, `message`, is stamped 10:00 local time and was
    /// written five hours later by the file system's clock (a server at UTC−5, bias 300).
    fn supsetup_log(dir: &Path, message: &str) -> (std::path::PathBuf, String, NaiveDateTime) {
        let path = dir.join("SUPSetup.log");
        let local = NaiveDate::from_ymd_opt(2026, 12, 4)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .expect("a time");
        let text = stamped(local, message);
        std::fs::write(&path, &text).expect("written");
        written_at(&path, local + Duration::minutes(300));
        (path, text, local)
    }

    #[test]
    fn zoneless_lines_take_the_bias_their_file_tells_then_the_last_one_told() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (path, text, local) = supsetup_log(dir.path(), "Installation was successful.");
        let mut zones = Zones::new(BTreeMap::new());
        let mut records = parsed(&text);
        zones.place("SUP1", &path, &mut records);
        assert_eq!(records[0].bias, Some(300));
        assert_eq!(
            records[0].time_utc().map(|t| t.naive_utc()),
            Some(local + Duration::minutes(300))
        );

        // The file stops telling (its last line has no stamp): the server's last answer holds,
        // and another server learns nothing from it.
        let mut f = std::fs::File::options()
            .append(true)
            .open(&path)
            .expect("opened");
        f.write_all(b"a line without a stamp\r\n").expect("written");
        let mut again = parsed(&text);
        zones.place("SUP1", &path, &mut again);
        assert_eq!(again[0].bias, Some(300));
        let mut other = parsed(&text);
        zones.place("SUP2", &path, &mut other);
        assert_eq!(other[0].bias, None);
    }

    #[test]
    fn a_configured_bias_is_the_servers_own_else_the_default() {
        let zones = Zones::new(BTreeMap::from([
            ("SUP1".to_string(), 480),
            ("*".to_string(), 0),
        ]));
        assert_eq!(zones.configured("SUP1"), Some(480));
        assert_eq!(zones.configured("SUP2"), Some(0));
        assert_eq!(Zones::new(BTreeMap::new()).configured("SUP1"), None);
    }

    #[test]
    fn the_servers_own_zoned_lines_come_first_and_keep_their_bias() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // The file would tell 300.
        let (setup, text, _) = supsetup_log(dir.path(), "SMSWSUS Setup Started....");
        let zoned = "Checking for supported SQL version  $$<SMS_WSUS_CONTROL_MANAGER><12-04-2026 10:00:00.000+480><thread=1 (0x1)>";
        let mut zones = Zones::new(BTreeMap::new());
        let mut wsusctrl = parsed(zoned);
        zones.place("SUP1", &dir.path().join("WSUSCtrl.log"), &mut wsusctrl);
        assert_eq!(wsusctrl[0].bias, Some(480), "a line's own bias is kept");
        let mut records = parsed(&text);
        zones.place("SUP1", &setup, &mut records);
        assert_eq!(records[0].bias, Some(480), "the server's lines say 480");
        let mut elsewhere = parsed(&text);
        zones.place("SUP2", &setup, &mut elsewhere);
        assert_eq!(
            elsewhere[0].bias,
            Some(300),
            "SUP2 has no zoned line: the file tells"
        );
    }
}
