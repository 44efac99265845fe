//! The console's window on the event stream: one `WatchEvents` stream from the coordinator,
//! replayed from the first stored event on start, keeps the most recent events overall and per
//! site (both bounded), and fans each new event out to the open pages. After a lost stream it
//! resumes after the last sequence it holds, so no event is counted twice or skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sup_proto::v1;
use tokio::sync::{broadcast, watch};

use crate::sources::Sources;

/// One event as the stream numbered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub sequence: u64,
    pub event: v1::Event,
}

struct Window {
    recent: VecDeque<Arc<Entry>>,
    per_site: HashMap<String, VecDeque<Arc<Entry>>>,
    last_sequence: u64,
}

pub struct History {
    window: Mutex<Window>,
    recent_cap: usize,
    per_site_cap: usize,
    live: broadcast::Sender<Arc<Entry>>,
    connected: Gauge<i64, AtomicI64>,
    received: Counter,
}

impl History {
    pub fn new(recent_cap: usize, per_site_cap: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            window: Mutex::new(Window {
                recent: VecDeque::new(),
                per_site: HashMap::new(),
                last_sequence: 0,
            }),
            recent_cap: recent_cap.max(1),
            per_site_cap: per_site_cap.max(1),
            live,
            connected: Gauge::default(),
            received: Counter::default(),
        }
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "sup_console_events_connected",
            "1 while the console follows the coordinator's event stream",
            self.connected.clone(),
        );
        registry.register(
            "sup_console_events_received",
            "Events the console received from the coordinator",
            self.received.clone(),
        );
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one event in; one already held (by its sequence) is ignored.
    pub fn push(&self, entry: Entry) -> bool {
        let entry = Arc::new(entry);
        {
            let mut w = self.window();
            if entry.sequence != 0 && entry.sequence <= w.last_sequence {
                return false;
            }
            w.last_sequence = w.last_sequence.max(entry.sequence);
            w.recent.push_back(entry.clone());
            while w.recent.len() > self.recent_cap {
                w.recent.pop_front();
            }
            if !entry.event.site.is_empty() {
                let ring = w.per_site.entry(entry.event.site.clone()).or_default();
                ring.push_back(entry.clone());
                while ring.len() > self.per_site_cap {
                    ring.pop_front();
                }
            }
        }
        self.received.inc();
        // No page open is not an error.
        let _ = self.live.send(entry);
        true
    }

    /// The most recent events, newest last; of one site when `site` is given.
    pub fn recent(&self, site: Option<&str>) -> Vec<Arc<Entry>> {
        let w = self.window();
        match site {
            Some(site) => w
                .per_site
                .get(site)
                .map(|r| r.iter().cloned().collect())
                .unwrap_or_default(),
            None => w.recent.iter().cloned().collect(),
        }
    }

    pub fn last_sequence(&self) -> u64 {
        self.window().last_sequence
    }

    /// Counts `sequence` as held without an event: one the coordinator cannot send.
    pub fn skip(&self, sequence: u64) {
        let mut w = self.window();
        w.last_sequence = w.last_sequence.max(sequence);
    }

    /// New events as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.live.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.get() == 1
    }
}

/// Breaks at one sequence after which the event there is skipped.
const STUCK_LIMIT: u32 = 5;

/// Follows the coordinator's events into `history` until `stop`, reconnecting with a growing
/// pause (up to 10 s) while the coordinator cannot be reached.
/// On its first connection it reads the last `replay` events stored, then follows.
pub async fn follow(
    history: Arc<History>,
    sources: Sources,
    replay: u32,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut pause = Duration::from_millis(200);
    // How often in a row the stream broke at the same place: an event the coordinator cannot
    // send (undecodable) would otherwise stop the window for good.
    let mut stuck = (0u64, 0u32);
    loop {
        let held = history.last_sequence();
        let from_sequence = held + 1;
        if stuck.0 == from_sequence && stuck.1 >= STUCK_LIMIT {
            tracing::error!(
                sequence = from_sequence,
                "the coordinator cannot send this event; the console skips it"
            );
            history.skip(from_sequence);
            stuck = (0, 0);
            continue;
        }
        let opened = sources
            .coordinator()
            .watch_events(v1::WatchEventsRequest {
                site: String::new(),
                // The first time, only the recent history: a long audit trail is not replayed.
                from_sequence: if held == 0 { 0 } else { from_sequence },
                follow: true,
                tail: if held == 0 { replay } else { 0 },
            })
            .await;
        match opened {
            Ok(response) => {
                history.connected.set(1);
                pause = Duration::from_millis(200);
                tracing::info!(from_sequence, "following the coordinator's events");
                let mut stream = response.into_inner();
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                        next = stream.next() => match next {
                            Some(Ok(w)) => {
                                if let Some(event) = w.event {
                                    history.push(Entry { sequence: w.sequence, event });
                                }
                            }
                            Some(Err(status)) => {
                                tracing::warn!(error = %status.message(), "the event stream broke; resuming");
                                let at = history.last_sequence() + 1;
                                stuck = if stuck.0 == at { (at, stuck.1 + 1) } else { (at, 1) };
                                break;
                            }
                            None => {
                                tracing::warn!("the coordinator ended the event stream; resuming");
                                break;
                            }
                        }
                    }
                }
                history.connected.set(0);
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), retry_in = ?pause, "cannot follow the coordinator's events");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, site: &str) -> Entry {
        Entry {
            sequence,
            event: v1::Event {
                id: format!("e{sequence}"),
                site: site.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn keeps_the_newest_events_overall_and_per_site_within_bounds() {
        let h = History::new(3, 2);
        for (s, site) in [(1, "CEN"), (2, "CH1"), (3, "CEN"), (4, "CEN"), (5, "CH1")] {
            assert!(h.push(entry(s, site)));
        }
        let seqs = |v: Vec<Arc<Entry>>| v.iter().map(|e| e.sequence).collect::<Vec<_>>();
        assert_eq!(seqs(h.recent(None)), vec![3, 4, 5]);
        assert_eq!(seqs(h.recent(Some("CEN"))), vec![3, 4]);
        assert_eq!(seqs(h.recent(Some("CH1"))), vec![2, 5]);
        assert!(h.recent(Some("XXX")).is_empty());
        assert_eq!(h.last_sequence(), 5);
    }

    #[test]
    fn an_event_already_held_is_not_taken_twice() {
        let h = History::new(10, 10);
        let mut live = h.subscribe();
        assert!(h.push(entry(1, "CEN")));
        assert!(h.push(entry(2, "CEN")));
        assert!(!h.push(entry(2, "CEN")), "a redelivered event");
        assert!(!h.push(entry(1, "CEN")), "an older one");
        assert_eq!(h.recent(None).len(), 2);
        assert_eq!(live.try_recv().map(|e| e.sequence).ok(), Some(1));
        assert_eq!(live.try_recv().map(|e| e.sequence).ok(), Some(2));
        assert!(live.try_recv().is_err(), "nothing sent for the duplicates");
    }
}
