//! The set of followed files, the poll loop, publishing, and positions in KV.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use notify::Watcher as _;
use sup_bus::{Bus, Outgoing, subjects};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};
use sup_smslog::{Classifier, LogReader, Position};
use tokio::sync::{mpsc, watch};

use crate::Settings;
use crate::metrics::{FileLabels, LogLabels, Metrics, MilestoneLabels};
use crate::zones::Zones;

/// Messages published before a group's acknowledgements are awaited and its positions saved: a
/// round trip per group rather than per file, and a bounded amount held for a retry.
const GROUP_MESSAGES: usize = 2048;

/// Sites whose role records are read at once while discovering (each read itself has several
/// requests in flight).
const SITES_IN_FLIGHT: usize = 16;

/// Requests in flight for reads of role records and saves of positions.
const IN_FLIGHT: usize = 64;

/// One followed file.
struct Followed {
    site: String,
    /// The server whose folder this is.
    server: String,
    log: String,
    reader: LogReader,
    classifier: Classifier,
}

pub struct Watcher {
    bus: Bus,
    settings: Settings,
    metrics: Metrics,
    files: BTreeMap<String, Followed>,
    /// Roles known per site, to name the SUP a site-server line is about.
    roles: BTreeMap<String, BTreeSet<String>>,
    zones: Zones,
}

fn position_to_text(p: &Position, classifier: &Classifier) -> String {
    format!(
        "{} {} {} {}",
        p.file_id,
        p.offset,
        p.rotated_done,
        classifier.state()
    )
}

fn position_from_text(t: &str) -> (Position, Classifier) {
    let mut parts = t.split(' ');
    let file_id = parts.next().unwrap_or_default().to_string();
    let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
    let rotated_done = parts.next().unwrap_or_default().to_string();
    let classifier = Classifier::restore(parts.next().unwrap_or_default());
    (
        Position {
            file_id,
            offset,
            rotated_done,
        },
        classifier,
    )
}

impl Watcher {
    pub fn new(bus: Bus, mut settings: Settings, metrics: Metrics) -> Self {
        Self {
            bus,
            // The configured biases are the zones' to consult from here on.
            zones: Zones::new(std::mem::take(&mut settings.tz_bias)),
            settings,
            metrics,
            files: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }

    fn folder(&self, site: &str, server: &str) -> PathBuf {
        PathBuf::from(
            self.settings
                .path_template
                .replace("{root}", &self.settings.root)
                .replace("{site}", site)
                .replace("{server}", server),
        )
    }

    fn mine(&self, server: &str) -> bool {
        self.settings.own_servers.is_empty()
            || self
                .settings
                .own_servers
                .iter()
                .any(|s| s.eq_ignore_ascii_case(server))
    }

    /// The (site, server, folder, logs) to follow now.
    async fn wanted(&mut self) -> anyhow::Result<Vec<(String, String, PathBuf, Vec<String>)>> {
        let mut out = Vec::new();
        let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if self.settings.discover {
            let sites = self.bus.applied_sites().await?;
            let codes: Vec<String> = sites.iter().map(|s| s.code.clone()).collect();
            let records: Vec<Vec<v1::RoleStatus>> = futures::stream::iter(codes)
                .map(|code| {
                    let bus = self.bus.clone();
                    async move { bus.role_records(&code).await }
                })
                .buffered(SITES_IN_FLIGHT)
                .try_collect()
                .await?;
            for (site, records) in sites.into_iter().zip(records) {
                let code = site.code.clone();
                let servers = roles.entry(code.clone()).or_default();
                for r in records {
                    if r.state != v1::RoleState::Removed as i32 {
                        servers.insert(r.server.clone());
                    }
                }
                if !site.site_server.is_empty() {
                    out.push((code.clone(), site.site_server.clone()));
                }
            }
        }
        let mut wanted: Vec<(String, String, PathBuf, Vec<String>)> = Vec::new();
        for (site, servers) in &roles {
            for server in servers {
                out.push((site.clone(), server.clone()));
            }
        }
        for (site, server) in out {
            if self.mine(&server) {
                let folder = self.folder(&site, &server);
                wanted.push((site, server, folder, self.settings.logs.clone()));
            }
        }
        for w in &self.settings.watch {
            let folder = w
                .folder
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| self.folder(&w.site, &w.server));
            roles
                .entry(w.site.clone())
                .or_default()
                .insert(w.server.clone());
            wanted.push((
                w.site.clone(),
                w.server.clone(),
                folder,
                w.logs.clone().unwrap_or_else(|| self.settings.logs.clone()),
            ));
        }
        self.roles = roles;
        Ok(wanted)
    }

    /// Adds files newly wanted (resuming from their saved positions, read several at a time);
    /// keeps the others.
    async fn refresh(
        &mut self,
        notifier: &mut Option<notify::RecommendedWatcher>,
    ) -> anyhow::Result<()> {
        let mut new = Vec::new();
        for (site, server, folder, logs) in self.wanted().await? {
            if let Some(n) = notifier.as_mut()
                && folder.exists()
            {
                let _ = n.watch(&folder, notify::RecursiveMode::NonRecursive);
            }
            for log in logs {
                let key = subjects::position_key(&site, &server, &log);
                if !self.files.contains_key(&key) {
                    new.push((key, site.clone(), server.clone(), folder.join(&log), log));
                }
            }
        }
        let saved = self
            .bus
            .positions()
            .get_many(new.iter().map(|(key, ..)| key.clone()).collect())
            .await?;
        for ((key, site, server, path, log), saved) in new.into_iter().zip(saved) {
            let (pos, classifier) = match saved {
                Some(b) => position_from_text(&String::from_utf8_lossy(&b)),
                None => (Position::default(), Classifier::new()),
            };
            tracing::info!(site, server, log, offset = pos.offset, "following");
            self.files.insert(
                key,
                Followed {
                    site,
                    server,
                    log,
                    reader: LogReader::resume(path, pos),
                    classifier,
                },
            );
        }
        Ok(())
    }

    /// Names the SUP a line is about: the server the line names (an FQDN, or a NetBIOS name
    /// matched to a role of the site), else the server whose folder it is.
    fn resolve_server(&self, site: &str, folder_server: &str, named: Option<&str>) -> String {
        let Some(named) = named
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
        else {
            return folder_server.to_string();
        };
        let roles = self.roles.get(site);
        let exact = roles.and_then(|r| r.iter().find(|s| s.eq_ignore_ascii_case(&named)));
        let short = roles.and_then(|r| {
            r.iter().find(|s| {
                s.split('.')
                    .next()
                    .is_some_and(|h| h.eq_ignore_ascii_case(&named))
            })
        });
        exact.or(short).cloned().unwrap_or_else(|| {
            if named.contains('.') {
                named
            } else {
                folder_server.to_string()
            }
        })
    }

    /// Reads every followed file once, then publishes what was read and saves the positions a
    /// group of files at a time: a fleet's thousands of files cost a round trip per group, not
    /// one per file, while a position still moves only once the streams hold what it passed.
    async fn poll_all(&mut self) -> anyhow::Result<usize> {
        let keys: Vec<String> = self.files.keys().cloned().collect();
        let mut total = 0;
        let mut group = Vec::new();
        let mut messages = 0;
        for key in keys {
            let Some(polled) = self.read_file(&key) else {
                continue;
            };
            messages += polled.messages(self.settings.publish_lines);
            group.push(polled);
            if messages >= GROUP_MESSAGES {
                total += self.publish_group(std::mem::take(&mut group)).await?;
                messages = 0;
            }
        }
        if !group.is_empty() {
            total += self.publish_group(group).await?;
        }
        Ok(total)
    }

    /// Reads one followed file once: every line when lines are published, otherwise only the
    /// lines that can hold a milestone (which keeps a large backlog cheap). `None` when nothing
    /// new was read.
    fn read_file(&mut self, key: &str) -> Option<Polled> {
        let server = self.files.get(key)?.server.clone();
        let bias = self.zones.configured(&server);
        let publish_lines = self.settings.publish_lines;
        let f = self.files.get_mut(key)?;
        let gaps_before = f.reader.gaps;
        let mut classifier = f.classifier.clone();
        let read = if publish_lines {
            let (mut items, mut n) = (Vec::new(), 0u64);
            f.reader
                .poll_records(&mut classifier, bias, &f.log, |l, record, milestone| {
                    n += 1;
                    items.push(Read {
                        file_id: l.file_id.to_string(),
                        offset: l.offset,
                        record: record.into_owned(),
                        milestone,
                    });
                })
                .map(|()| (items, n))
        } else {
            f.reader
                .poll_milestones(&mut classifier, bias, &f.log)
                .map(|(found, n)| {
                    let items = found
                        .into_iter()
                        .map(|m| Read {
                            file_id: m.file_id,
                            offset: m.offset,
                            record: m.record,
                            milestone: Some(m.milestone),
                        })
                        .collect();
                    (items, n)
                })
        };
        let (mut reads, read_lines) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %f.reader.path().display(), error = %e, "reading a log");
                return None;
            }
        };
        if bias.is_none() {
            let records = reads.iter_mut().map(|r| &mut r.record);
            self.zones.place(&server, f.reader.path(), records);
        }
        if f.reader.gaps > gaps_before {
            self.metrics.gaps.inc();
            tracing::warn!(path = %f.reader.path().display(), "a rotation's unread tail was gone");
        }
        self.metrics
            .lag_bytes
            .get_or_create(&FileLabels {
                site: f.site.clone(),
                server: f.server.clone(),
                log: f.log.clone(),
            })
            .set(i64::try_from(f.reader.lag()).unwrap_or(i64::MAX));
        (read_lines > 0).then(|| Polled {
            key: key.to_string(),
            reads,
            read_lines,
            classifier,
        })
    }

    /// Publishes what a group of files read (lines when configured, and milestones), then saves
    /// their positions, several writes in flight. Returns how many lines the group read.
    async fn publish_group(&mut self, group: Vec<Polled>) -> anyhow::Result<usize> {
        let mut outgoing: Vec<Outgoing> = Vec::new();
        let mut milestones = Vec::new();
        for polled in &group {
            let Some(f) = self.files.get(&polled.key) else {
                continue;
            };
            let (site, server, log) = (&f.site, &f.server, &f.log);
            let line_subject = subjects::log_line(site, server, log);
            for l in &polled.reads {
                if self.settings.publish_lines {
                    let json =
                        crate::records::json(log, 0, &l.record.borrowed(), l.milestone.as_ref())
                            .to_string();
                    outgoing.push(Outgoing {
                        subject: line_subject.clone(),
                        msg_id: format!("line:{}:{}:{}", polled.key, l.file_id, l.offset),
                        payload: Bytes::from(json),
                        span: None,
                    });
                }
                if let Some(m) = &l.milestone {
                    self.metrics
                        .milestones
                        .get_or_create(&MilestoneLabels {
                            log: log.clone(),
                            milestone: m.name.to_string(),
                        })
                        .inc();
                    milestones.push(self.milestone_event(&polled.key, f, l, m));
                }
            }
        }
        let this = &*self;
        let announced: Vec<Outgoing> = futures::stream::iter(milestones)
            .map(|e| async move {
                let subject = subjects::event(&e.site, subjects::event_kind(&e));
                let span = this.milestone_span(&e, &subject).await;
                Outgoing {
                    subject,
                    msg_id: e.id.clone(),
                    payload: Bytes::from(e.encode_to_vec()),
                    span: Some(span),
                }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        outgoing.extend(announced);
        // Acked by the streams before the positions move: a crash re-reads, and the stream
        // drops what it already has.
        self.bus.publish_batch(outgoing).await?;
        let mut total = 0;
        let mut saves = Vec::with_capacity(group.len());
        for polled in group {
            let Some(f) = self.files.get_mut(&polled.key) else {
                continue;
            };
            self.metrics
                .lines
                .get_or_create(&LogLabels { log: f.log.clone() })
                .inc_by(polled.read_lines);
            total += usize::try_from(polled.read_lines).unwrap_or(usize::MAX);
            f.classifier = polled.classifier;
            saves.push((
                polled.key,
                position_to_text(f.reader.position(), &f.classifier),
            ));
        }
        let positions = self.bus.positions();
        futures::stream::iter(saves)
            .map(|(key, text)| async move {
                positions
                    .put(&key, text.into())
                    .await
                    .map_err(|e| anyhow::anyhow!("saving the position of {key}: {e}"))
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(total)
    }

    /// The event announcing a milestone; its id is the file's identity and the line's offset,
    /// so a line read twice is announced once.
    fn milestone_event(
        &self,
        key: &str,
        f: &Followed,
        l: &Read,
        m: &sup_smslog::Milestone,
    ) -> v1::Event {
        let target = self.resolve_server(&f.site, &f.server, m.field("server"));
        let line_time = l
            .record
            .time_utc()
            .map(|t| std::time::SystemTime::from(t).into());
        v1::Event {
            id: format!("ms:{}:{}:{}", key, l.file_id, l.offset),
            time: Some(std::time::SystemTime::now().into()),
            site: f.site.clone(),
            server: target,
            epoch: 0,
            op_id: String::new(),
            payload: Some(Payload::Milestone(v1::MilestoneObserved {
                name: m.name.to_string(),
                log: f.log.clone(),
                line: l.record.message.clone(),
                line_time,
                fields: m
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                file_id: l.file_id.clone(),
                offset: l.offset,
            })),
        }
    }

    /// A producer span for a milestone, in the trace of the operation that last moved the role
    /// (its `trace_context`): a log line carries no trace context, the role record does.
    async fn milestone_span(&self, e: &v1::Event, subject: &str) -> tracing::Span {
        let name = match &e.payload {
            Some(Payload::Milestone(m)) => m.name.as_str(),
            _ => "",
        };
        let span = tracing::info_span!(
            "milestone",
            otel.name = %format!("{subject} publish"),
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.operation.type = "publish",
            messaging.destination.name = %subject,
            sup.site = %e.site,
            sup.server = %e.server,
            sup.milestone = %name,
        );
        let key = subjects::role_key(&e.site, &e.server);
        if let Ok(Some((raw, _))) = self.bus.roles().get(&key).await
            && let Ok(role) = v1::RoleStatus::decode(raw)
            && !role.trace_context.is_empty()
        {
            sup_bus::trace::follow_traceparent(&role.trace_context, &span);
        }
        span
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
        let mut notifier =
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok() {
                    let _ = wake_tx.try_send(());
                }
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "file notifications unavailable; polling only");
                    None
                }
            };
        let poll_every = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let discover_every = Duration::from_secs(self.settings.discover_interval_secs.max(1));
        let mut last_discover: Option<Instant> = None;
        loop {
            if last_discover.is_none_or(|t| t.elapsed() >= discover_every) {
                if let Err(e) = self.refresh(&mut notifier).await {
                    tracing::warn!(error = %e, "discovering servers");
                }
                last_discover = Some(Instant::now());
            }
            if let Err(e) = self.poll_all().await {
                tracing::warn!(error = %e, "publishing; will re-read from the saved positions");
                // Positions were not saved for what failed; drop readers so they resume from KV.
                self.files.clear();
                last_discover = None;
            }
            tokio::select! {
                _ = wake_rx.recv() => {}
                _ = tokio::time::sleep(poll_every) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

/// What one file's poll read, not yet published.
struct Polled {
    key: String,
    reads: Vec<Read>,
    read_lines: u64,
    /// The classifier's state after these lines; kept once they are published.
    classifier: Classifier,
}

impl Polled {
    /// How many messages publishing this takes.
    fn messages(&self, publish_lines: bool) -> usize {
        let milestones = self.reads.iter().filter(|r| r.milestone.is_some()).count();
        if publish_lines {
            self.reads.len() + milestones
        } else {
            milestones
        }
    }
}

/// A line read by a poll: every line when lines are published, otherwise only milestone lines.
struct Read {
    file_id: String,
    offset: u64,
    record: sup_smslog::Record,
    milestone: Option<sup_smslog::Milestone>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let p = Position {
            file_id: "00ff".into(),
            offset: 42,
            rotated_done: "abcd".into(),
        };
        let c = Classifier::restore("100");
        let (p2, c2) = position_from_text(&position_to_text(&p, &c));
        assert_eq!(p2, p);
        assert_eq!(c2, c);
        let (empty, _) = position_from_text("");
        assert_eq!(empty, Position::default());
    }
}
