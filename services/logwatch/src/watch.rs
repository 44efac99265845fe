//! The set of followed files, the poll loop, publishing, and positions in KV.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use notify::Watcher as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sup_bus::{Bus, Outgoing, subjects};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};
use sup_smslog::{Classifier, LogReader, Position, parse_line};
use tokio::sync::{mpsc, watch};

use crate::Settings;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    pub log: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MilestoneLabels {
    pub log: String,
    pub milestone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub site: String,
    pub server: String,
    pub log: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub lines: Family<LogLabels, Counter>,
    pub milestones: Family<MilestoneLabels, Counter>,
    pub lag_bytes: Family<FileLabels, Gauge>,
    pub gaps: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_log_lines",
            "Log lines read, by log",
            self.lines.clone(),
        );
        r.register(
            "sup_log_milestones",
            "Milestones found, by log and name",
            self.milestones.clone(),
        );
        r.register(
            "sup_logwatch_lag_bytes",
            "Bytes between the read position and the end of each followed file",
            self.lag_bytes.clone(),
        );
        r.register(
            "sup_logwatch_rotation_gaps",
            "Rotations whose unread tail was gone (rotated twice between reads)",
            self.gaps.clone(),
        );
    }
}

/// One followed file.
struct Followed {
    site: String,
    /// The server whose folder this is.
    server: String,
    log: String,
    reader: LogReader,
    classifier: Classifier,
    key: String,
}

pub struct Watcher {
    bus: Bus,
    settings: Settings,
    metrics: Metrics,
    files: BTreeMap<String, Followed>,
    /// Roles known per site, to name the SUP a site-server line is about.
    roles: BTreeMap<String, BTreeSet<String>>,
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
    pub fn new(bus: Bus, settings: Settings, metrics: Metrics) -> Self {
        Self {
            bus,
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

    fn bias(&self, server: &str) -> Option<i32> {
        self.settings
            .tz_bias
            .get(server)
            .or_else(|| self.settings.tz_bias.get("*"))
            .copied()
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
            for site in self.bus.applied_sites().await? {
                let code = site.code.clone();
                let servers = roles.entry(code.clone()).or_default();
                for r in self.bus.role_records(&code).await? {
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

    /// Adds files newly wanted (resuming from their saved positions); keeps the others.
    async fn refresh(
        &mut self,
        notifier: &mut Option<notify::RecommendedWatcher>,
    ) -> anyhow::Result<()> {
        for (site, server, folder, logs) in self.wanted().await? {
            if let Some(n) = notifier.as_mut()
                && folder.exists()
            {
                let _ = n.watch(&folder, notify::RecursiveMode::NonRecursive);
            }
            for log in logs {
                let key = subjects::position_key(&site, &server, &log);
                if self.files.contains_key(&key) {
                    continue;
                }
                let saved = self.bus.positions().get(&key).await?;
                let (pos, classifier) = match saved {
                    Some((b, _)) => position_from_text(&String::from_utf8_lossy(&b)),
                    None => (Position::default(), Classifier::new()),
                };
                tracing::info!(site, server, log, offset = pos.offset, "following");
                self.files.insert(
                    key.clone(),
                    Followed {
                        site: site.clone(),
                        server: server.clone(),
                        log: log.clone(),
                        reader: LogReader::resume(folder.join(&log), pos),
                        classifier,
                        key,
                    },
                );
            }
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

    /// Reads every followed file once; publishes lines and milestones, then saves positions.
    async fn poll_all(&mut self) -> anyhow::Result<usize> {
        let keys: Vec<String> = self.files.keys().cloned().collect();
        let mut total = 0;
        for key in keys {
            total += self.poll_file(&key).await?;
        }
        Ok(total)
    }

    /// Reads one followed file once; publishes its lines (when configured) and milestones, then
    /// saves its position. Returns how many lines were read.
    async fn poll_file(&mut self, key: &str) -> anyhow::Result<usize> {
        let Some(server) = self.files.get(key).map(|f| f.server.clone()) else {
            return Ok(0);
        };
        let bias = self.bias(&server);
        let publish_lines = self.settings.publish_lines;
        let Some(f) = self.files.get_mut(key) else {
            return Ok(0);
        };
        let gaps_before = f.reader.gaps;
        let mut classifier = f.classifier.clone();
        // Published lines need every line parsed; otherwise only the lines that can hold a
        // milestone are, which keeps a large backlog cheap.
        let read = if publish_lines {
            f.reader.poll().map(|lines| {
                let n = lines.len() as u64;
                let items: Vec<Read> = lines
                    .into_iter()
                    .map(|l| {
                        let record = parse_line(&l.text, bias);
                        let milestone = classifier.classify(&record, &f.log);
                        Read {
                            file_id: l.file_id,
                            offset: l.offset,
                            record,
                            milestone,
                        }
                    })
                    .collect();
                (items, n)
            })
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
        let (lines, read_lines) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %f.reader.path().display(), error = %e, "reading a log");
                return Ok(0);
            }
        };
        if f.reader.gaps > gaps_before {
            self.metrics.gaps.inc();
            tracing::warn!(path = %f.reader.path().display(), "a rotation's unread tail was gone");
        }
        let lag = f.reader.lag();
        let (site, server, log) = (f.site.clone(), f.server.clone(), f.log.clone());
        self.metrics
            .lag_bytes
            .get_or_create(&FileLabels {
                site: site.clone(),
                server: server.clone(),
                log: log.clone(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        if read_lines == 0 {
            return Ok(0);
        }
        let mut batch: Vec<(String, String, Bytes)> = Vec::new();
        let mut milestones = Vec::new();
        let line_subject = subjects::log_line(&site, &server, &log);
        for l in lines {
            let Read {
                record, milestone, ..
            } = &l;
            if publish_lines {
                let json = crate::records::json(&log, 0, record, milestone.as_ref());
                batch.push((
                    line_subject.clone(),
                    format!("line:{}:{}:{}", key, l.file_id, l.offset),
                    Bytes::from(json.to_string()),
                ));
            }
            if let Some(m) = milestone {
                let target = self.resolve_server(&site, &server, m.field("server"));
                let line_time = record
                    .time_utc()
                    .map(|t| std::time::SystemTime::from(t).into());
                let event = v1::Event {
                    id: format!("ms:{}:{}:{}", key, l.file_id, l.offset),
                    time: Some(std::time::SystemTime::now().into()),
                    site: site.clone(),
                    server: target,
                    epoch: 0,
                    op_id: String::new(),
                    payload: Some(Payload::Milestone(v1::MilestoneObserved {
                        name: m.name.to_string(),
                        log: log.clone(),
                        line: record.message.clone(),
                        line_time,
                        fields: m
                            .fields
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                        file_id: l.file_id.clone(),
                        offset: l.offset,
                    })),
                };
                self.metrics
                    .milestones
                    .get_or_create(&MilestoneLabels {
                        log: log.clone(),
                        milestone: m.name.to_string(),
                    })
                    .inc();
                milestones.push(event);
            }
        }
        let mut outgoing: Vec<Outgoing> = batch
            .into_iter()
            .map(|(subject, msg_id, payload)| Outgoing {
                subject,
                msg_id,
                payload,
                span: None,
            })
            .collect();
        for e in &milestones {
            let subject = subjects::event(&e.site, subjects::event_kind(e));
            let span = self.milestone_span(e, &subject).await;
            outgoing.push(Outgoing {
                subject,
                msg_id: e.id.clone(),
                payload: Bytes::from(e.encode_to_vec()),
                span: Some(span),
            });
        }
        // Acked by the streams before the position moves: a crash re-reads, and the stream
        // drops what it already has.
        self.bus.publish_batch(outgoing).await?;
        self.metrics
            .lines
            .get_or_create(&LogLabels { log: log.clone() })
            .inc_by(read_lines);
        if let Some(f) = self.files.get_mut(key) {
            f.classifier = classifier;
            let text = position_to_text(f.reader.position(), &f.classifier);
            self.bus
                .positions()
                .put(&f.key, text.into())
                .await
                .map_err(|e| anyhow::anyhow!("saving the position of {}: {e}", f.key))?;
        }
        Ok(usize::try_from(read_lines).unwrap_or(usize::MAX))
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
