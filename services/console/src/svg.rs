//! The console's pictures, drawn as inline SVG on the server: no script and no chart library.
//! Every text put into a picture is escaped here, since the pages insert the SVG as markup.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sup_proto::convert::health_name;
use sup_proto::v1;

use crate::view::time;

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn duration_text(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn sync_colour(state: i32) -> &'static str {
    match v1::SyncState::try_from(state) {
        Ok(v1::SyncState::Succeeded) => "#2e7d32",
        Ok(v1::SyncState::Failed) => "#c62828",
        Ok(v1::SyncState::Running) => "#1565c0",
        _ => "#9e9e9e",
    }
}

const WIDTH: i64 = 720;
const HEIGHT: i64 = 160;
const LEFT: i64 = 56;
const BOTTOM: i64 = 24;

/// The synchronization runs (any order), oldest on the left: one bar per run, its height the
/// run's duration (a running one up to `now`), its colour the result; each bar's title says
/// when, why, how long and how it ended.
pub fn sync_history(runs: &[v1::SyncRun], now: DateTime<Utc>) -> String {
    let mut runs: Vec<&v1::SyncRun> = runs.iter().collect();
    runs.sort_by_key(|r| time(r.started.as_ref()));
    let durations: Vec<i64> = runs
        .iter()
        .map(|r| {
            let start = time(r.started.as_ref());
            let end = time(r.finished.as_ref()).or(Some(now));
            match (start, end) {
                (Some(s), Some(e)) => (e - s).num_seconds().max(0),
                _ => 0,
            }
        })
        .collect();
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="Synchronization history" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">"#
    );
    if runs.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">No synchronization has run yet</text></svg>"##,
            WIDTH / 2,
            HEIGHT / 2
        );
        return svg;
    }
    let longest = durations.iter().copied().max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - BOTTOM - 10;
    let plot_w = WIDTH - LEFT - 8;
    let slot = (plot_w / i64::try_from(runs.len()).unwrap_or(1)).max(4);
    let bar = (slot * 2 / 3).clamp(2, 40);
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/><text x="{tx}" y="14" text-anchor="end" font-size="11" fill="#555">{max}</text><text x="{tx}" y="{y}" text-anchor="end" font-size="11" fill="#555">0s</text>"##,
        y = HEIGHT - BOTTOM,
        x2 = WIDTH - 8,
        tx = LEFT - 6,
        max = escape(&duration_text(longest)),
    );
    for (i, (r, d)) in runs.iter().zip(&durations).enumerate() {
        let h = ((*d as f64 / longest as f64) * plot_h as f64).round() as i64;
        let h = h.max(2);
        let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + (slot - bar) / 2;
        let y = HEIGHT - BOTTOM - h;
        let title = format!(
            "{} {} ({}{}) on {}: {}, {}{}",
            crate::view::when(time(r.started.as_ref())),
            r.id,
            r.trigger,
            if r.full { ", full" } else { "" },
            r.server,
            sup_proto::convert::sync_state_name(r.state),
            duration_text(*d),
            if r.error.is_empty() {
                String::new()
            } else {
                format!(": {}", r.error)
            }
        );
        let _ = write!(
            svg,
            r#"<rect class="run" data-state="{state}" x="{x}" y="{y}" width="{bar}" height="{h}" fill="{fill}"><title>{title}</title></rect>"#,
            state = sup_proto::convert::sync_state_name(r.state),
            fill = sync_colour(r.state),
            title = escape(&title),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn health_colour(h: i32) -> &'static str {
    match v1::Health::try_from(h) {
        Ok(v1::Health::Healthy) => "#2e7d32",
        Ok(v1::Health::Degraded) => "#f9a825",
        Ok(v1::Health::Unhealthy) => "#c62828",
        _ => "#bdbdbd",
    }
}

/// One server's line on the health picture: its health before the first change, its changes,
/// oldest first, and its health now.
pub struct HealthLine {
    pub server: String,
    pub before: Option<i32>,
    pub changes: Vec<(DateTime<Utc>, i32)>,
    pub now: i32,
}

/// Health over time, one band per server from `from` to `to`: each stretch coloured by the
/// health it had (before the first change the window holds: the health that change left, or
/// grey when unknown).
pub fn health_timeline(lines: &[HealthLine], from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let label_w = 230;
    let band_h = 18;
    let gap = 8;
    let height = i64::try_from(lines.len()).unwrap_or(0) * (band_h + gap) + 24;
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="Health over time" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let span = (to - from).num_milliseconds().max(1) as f64;
    let plot_w = (WIDTH - label_w - 8) as f64;
    let x_of = |t: DateTime<Utc>| {
        let ms = (t - from).num_milliseconds().clamp(0, span as i64) as f64;
        label_w + (ms / span * plot_w).round() as i64
    };
    for (i, line) in lines.iter().enumerate() {
        let y = i64::try_from(i).unwrap_or(0) * (band_h + gap) + 4;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="12" fill="#333">{}</text>"##,
            label_w - 8,
            y + 13,
            escape(&line.server)
        );
        // Stretches: [from, first change) unknown, then each change until the next.
        let mut stretches: Vec<(DateTime<Utc>, DateTime<Utc>, i32)> = Vec::new();
        let mut start = from;
        let mut health = line.before.unwrap_or(v1::Health::Unknown as i32);
        for (at, to_health) in line.changes.iter().filter(|(at, _)| *at <= to) {
            let at = (*at).max(from);
            if at > start {
                stretches.push((start, at, health));
            }
            start = at;
            health = *to_health;
        }
        if line.changes.is_empty() {
            health = line.now;
        }
        stretches.push((start, to, health));
        for (a, b, h) in stretches {
            let (xa, xb) = (x_of(a), x_of(b));
            let _ = write!(
                svg,
                r#"<rect x="{xa}" y="{y}" width="{w}" height="{band_h}" fill="{fill}"><title>{title}</title></rect>"#,
                w = (xb - xa).max(1),
                fill = health_colour(h),
                title = escape(&format!(
                    "{}: {} from {}",
                    line.server,
                    health_name(h),
                    crate::view::when(Some(a))
                )),
            );
        }
        let _ = write!(
            svg,
            r##"<text class="health-now" data-server="{server}" x="{x}" y="{ty}" font-size="11" fill="#fff" text-anchor="end">{now}</text>"##,
            server = escape(&line.server),
            x = WIDTH - 12,
            ty = y + 13,
            now = health_name(line.now),
        );
    }
    let axis_y = height - 6;
    let _ = write!(
        svg,
        r##"<text x="{label_w}" y="{axis_y}" font-size="11" fill="#555">{}</text><text x="{}" y="{axis_y}" font-size="11" fill="#555" text-anchor="end">{}</text></svg>"##,
        escape(&crate::view::when(Some(from))),
        WIDTH - 8,
        escape(&crate::view::when(Some(to))),
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sup_proto::prost_types::Timestamp;

    fn ts(secs: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: secs,
            nanos: 0,
        })
    }

    fn run(id: &str, start: i64, end: Option<i64>, state: v1::SyncState) -> v1::SyncRun {
        v1::SyncRun {
            id: id.into(),
            site: "CEN".into(),
            server: "cen-sup01.corp.example.com".into(),
            state: state as i32,
            started: ts(start),
            finished: end.and_then(ts),
            trigger: "manual".into(),
            ..Default::default()
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn sync_history_draws_one_bar_per_run_oldest_first_with_its_result() {
        let now = Utc.timestamp_opt(10_000, 0).single().expect("time");
        let runs = [
            run("r-2", 2_000, Some(2_600), v1::SyncState::Failed),
            run("r-1", 1_000, Some(1_060), v1::SyncState::Succeeded),
            run("r-3", 9_700, None, v1::SyncState::Running),
        ];
        let svg = sync_history(&runs, now);
        let states: Vec<&str> = svg
            .split("data-state=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap_or(""))
            .collect();
        assert_eq!(states, ["succeeded", "failed", "running"]);
        assert!(
            svg.contains("r-2 (manual) on cen-sup01.corp.example.com: failed, 10m00s"),
            "{svg}"
        );
        // The longest run (10 min) is the scale; the running one counts up to now (5 min).
        assert!(svg.contains(">10m00s</text>"), "{svg}");
        assert!(svg.contains("running, 5m00s"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn sync_history_without_runs_says_so() {
        let svg = sync_history(&[], Utc::now());
        assert!(svg.contains("No synchronization has run yet"));
    }

    #[test]
    fn health_timeline_colours_each_stretch_and_escapes_names() {
        let from = Utc.timestamp_opt(0, 0).single().expect("time");
        let to = Utc.timestamp_opt(100, 0).single().expect("time");
        let at = |s| Utc.timestamp_opt(s, 0).single().expect("time");
        let lines = [
            HealthLine {
                server: "a<b>.example.com".into(),
                before: None,
                changes: vec![
                    (at(10), v1::Health::Healthy as i32),
                    (at(60), v1::Health::Unhealthy as i32),
                ],
                now: v1::Health::Unhealthy as i32,
            },
            HealthLine {
                server: "quiet.example.com".into(),
                before: None,
                changes: vec![],
                now: v1::Health::Healthy as i32,
            },
        ];
        let svg = health_timeline(&lines, from, to);
        assert!(svg.contains("a&lt;b&gt;.example.com"), "{svg}");
        assert!(!svg.contains("a<b>"), "{svg}");
        // Unknown before the first change, healthy from 10 s, unhealthy from 60 s.
        let fills: Vec<&str> = svg
            .split("fill=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap_or(""))
            .filter(|f| f.starts_with("#") && *f != "#333" && *f != "#555" && *f != "#fff")
            .collect();
        assert_eq!(fills, ["#bdbdbd", "#2e7d32", "#c62828", "#2e7d32"], "{svg}");
        assert!(svg.contains(r#"data-server="a&lt;b&gt;.example.com""#));
        // Known before its first change: that change's `from`, not grey.
        let known = [HealthLine {
            server: "s".into(),
            before: Some(v1::Health::Healthy as i32),
            changes: vec![(at(60), v1::Health::Unhealthy as i32)],
            now: v1::Health::Unhealthy as i32,
        }];
        let svg = health_timeline(&known, from, to);
        assert!(
            svg.contains("s: healthy from") && !svg.contains("unknown"),
            "{svg}"
        );
    }
}
