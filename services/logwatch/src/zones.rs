//! The time zone of each server's lines that carry none (SUPSetup.log's rolesetup stamps).
//!
//! A bias configured for the server, or under `*`, is used as it is. Without one, the file
//! itself says: its last line's local stamp against the time the server last wrote it
//! ([`sup_smslog::zone`]), read again whenever new zone-less lines arrive, so it follows summer
//! time. When the file cannot tell (it was written to while it was looked at, or its last line
//! has no stamp), the bias it last told for the same server is used: one server, one clock.
//! Without a time, a setup start cannot be told apart from the checks around it, and the
//! coordinator has to drop every check it holds for the role.

use std::collections::BTreeMap;
use std::path::Path;

use sup_smslog::{Format, Record};

pub struct Zones {
    configured: BTreeMap<String, i32>,
    learned: BTreeMap<String, i32>,
}

impl Zones {
    pub fn new(configured: BTreeMap<String, i32>) -> Self {
        Self {
            configured,
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

    /// Gives the records read from `path` (a log of `server`) that carry no zone the bias that
    /// file tells, or the one it last told for the server.
    pub fn place<'a>(
        &mut self,
        server: &str,
        path: &Path,
        records: impl IntoIterator<Item = &'a mut Record>,
    ) {
        let mut zoneless: Vec<&mut Record> = records
            .into_iter()
            .filter(|r| r.format == Format::RoleSetup && r.bias.is_none())
            .collect();
        if zoneless.is_empty() {
            return;
        }
        let told = sup_smslog::zone::file_zone_bias(path).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "reading a log's last write for its time zone");
            None
        });
        if let Some(bias) = told
            && self.learned.insert(server.to_string(), bias) != Some(bias)
        {
            tracing::info!(
                server,
                bias,
                path = %path.display(),
                "time-zone bias read from the last line of a log whose lines carry no zone"
            );
        }
        let Some(bias) = told.or_else(|| self.learned.get(server).copied()) else {
            tracing::warn!(
                server,
                path = %path.display(),
                lines = zoneless.len(),
                "lines without a time zone, none configured for the server ([tz_bias]) and the file does not tell one: their milestones have no time"
            );
            return;
        };
        for r in &mut zoneless {
            r.bias = Some(bias);
        }
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

    #[test]
    fn zoneless_lines_take_the_bias_their_file_tells_then_the_last_one_told() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("SUPSetup.log");
        let local = NaiveDate::from_ymd_opt(2026, 12, 4)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .expect("a time");
        let text = stamped(local, "Installation was successful.");
        std::fs::write(&path, &text).expect("written");
        written_at(&path, local + Duration::minutes(300));
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
    fn lines_with_a_zone_are_left_as_they_are() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("WCM.log");
        let line = "Checking for supported SQL version  $$<SMS_WSUS_CONTROL_MANAGER><12-04-2026 10:00:00.000+480><thread=1 (0x1)>";
        std::fs::write(&path, line).expect("written");
        let mut records = parsed(line);
        Zones::new(BTreeMap::new()).place("SUP1", &path, &mut records);
        assert_eq!(records[0].bias, Some(480));
    }
}
