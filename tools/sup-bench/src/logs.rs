//! Log benchmarks: parse + classify throughput beside `grep -F -c` on the same file, and the
//! latency from a line appended to a watched file to its milestone event delivered by NATS.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use sup_smslog::{Classifier, LogReader};

use crate::Figure;

const NEEDLE: &str = "Installation was successful";

/// Writes `size` bytes of SMS-format lines in the mix of a busy SUP's logs: mostly per-update
/// synchronization lines and the configuration manager's routine checks; in every 100 lines a
/// progress line and a configuration check's two milestones; every 1000th line the setup
/// success that `grep` counts. Returns how many of those there are.
fn generate(path: &Path, size: u64) -> anyhow::Result<u64> {
    let routine = [
        "Synchronizing update af5eb87e-cdd6-40bf-984f-5d0630406de8 - Definition Update for Microsoft Endpoint Protection - KB2461484",
        "Checking for supported version of WSUS (min WSUS 3.0 SP2 + KB2720211 + KB2734608)",
        "Synchronizing update 0a9e8f21-7f3d-4b7e-9d5e-4d3a0c1f2e77 - Security Update for Windows Server 2008 R2 x64 Edition (KB2871997)",
        "Attempting connection to WSUS server: SUP01.CONTOSO.COM, port: 8530, useSSL: False",
        "Synchronizing update 6c2ab1d4-1e2f-4a8b-b0c3-8d9e7f6a5b4c - Update for Microsoft Office 2010 (KB2553347) 32-Bit Edition",
        "Verify Upstream Server settings on the Active WSUS Server",
        "Waiting for changes for 59 minutes",
    ];
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written = 0u64;
    let mut n = 0u64;
    let mut hits = 0;
    while written < size {
        n += 1;
        let msg = match (n % 1000, n % 100) {
            (0, _) => {
                hits += 1;
                "Installation was successful."
            }
            (_, 25) => {
                "sync: WSUS synchronizing updates, processed 122 out of 130 items (93%), ETA in 00:00:03"
            }
            (_, 50) => {
                "Successfully connected to server: SUP01.CONTOSO.COM, port: 8530, useSSL: False"
            }
            (_, 51) => {
                "There are no unhealthy WSUS Server components on WSUS Server SUP01.CONTOSO.COM"
            }
            _ => routine[(n % routine.len() as u64) as usize],
        };
        let line = format!(
            "{msg}  $$<SMS_WSUS_CONFIGURATION_MANAGER><11-26-2026 17:{:02}:{:02}.{:03}+480><thread={} (0x{:X})>\r\n",
            (n / 60) % 60,
            n % 60,
            n % 1000,
            3404 + n % 7,
            3404 + n % 7
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    w.flush()?;
    Ok(hits)
}

/// Reads the file as the log watcher does when it does not publish every line: one
/// `LogReader::poll_milestones` from the start, which scans cache-sized reads for milestone
/// phrases and parses only the lines holding one. Returns the milestones found.
fn scan_file(path: &Path) -> anyhow::Result<u64> {
    let mut reader = LogReader::new(path);
    let mut classifier = Classifier::new();
    let (found, _lines) = reader.poll_milestones(&mut classifier, None, "WCM.log")?;
    Ok(found.len() as u64)
}

/// Reads the file as the log watcher does when it publishes every line, without the publishing:
/// `LogReader::poll_records` hands on each line borrowed from its read buffer, parsed into a
/// borrowed record, with its milestone. Returns (lines, milestones).
fn parse_every_line(path: &Path) -> anyhow::Result<(u64, u64)> {
    let mut reader = LogReader::new(path);
    let mut classifier = Classifier::new();
    let (mut lines, mut milestones) = (0u64, 0u64);
    reader.poll_records(&mut classifier, None, "WCM.log", |_, _, milestone| {
        milestones += u64::from(milestone.is_some());
        lines += 1;
    })?;
    Ok((lines, milestones))
}

/// The milestones of the file found by classifying each line, one by one, with no search for
/// candidate lines first: the reference the two timed paths are checked against.
fn classify_one_by_one(path: &Path) -> anyhow::Result<u64> {
    let mut reader = LogReader::new(path);
    let mut classifier = Classifier::new();
    let mut milestones = 0u64;
    reader.poll_each(|line| {
        let record = sup_smslog::parse_record(line.text, None);
        milestones += u64::from(classifier.classify_record(&record, "WCM.log").is_some());
    })?;
    Ok(milestones)
}

pub fn parse_throughput(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let size: u64 = if quick { 100 << 20 } else { 1 << 30 };
    let dir = Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("sms-mix-{}m.log", size >> 20));
    let expected_hits = if path.metadata().map(|m| m.len() >= size).unwrap_or(false) {
        None
    } else {
        eprintln!("generating {} ({} MiB)...", path.display(), size >> 20);
        Some(generate(&path, size)?)
    };
    let bytes = path.metadata()?.len() as f64;
    // Warm the page cache so both sides read from memory, then take the best of a few runs of
    // each, alternating, so a busy moment of a shared machine does not decide the ratio.
    let _ = scan_file(&path)?;
    let (mut grep_secs, mut ours, mut every_line_secs) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut grep_count, mut milestones) = (0, 0);
    let (mut lines, mut every_line_milestones) = (0, 0);
    for _ in 0..if quick { 3 } else { 5 } {
        let t = Instant::now();
        let grep = Command::new("grep")
            .args(["-F", "-c", NEEDLE])
            .arg(&path)
            .output()
            .context("running grep")?;
        grep_secs = grep_secs.min(t.elapsed().as_secs_f64());
        grep_count = String::from_utf8_lossy(&grep.stdout)
            .trim()
            .parse()
            .context("grep's count")?;
        let t = Instant::now();
        milestones = scan_file(&path)?;
        ours = ours.min(t.elapsed().as_secs_f64());
        // Every line parsed: what the watcher does when it publishes every line.
        let t = Instant::now();
        (lines, every_line_milestones) = parse_every_line(&path)?;
        every_line_secs = every_line_secs.min(t.elapsed().as_secs_f64());
    }
    if let Some(h) = expected_hits {
        anyhow::ensure!(grep_count == h, "grep counted {grep_count}, expected {h}");
    }
    let reference = classify_one_by_one(&path)?;
    anyhow::ensure!(
        milestones == reference && every_line_milestones == reference,
        "classifying each line found {reference} milestones, the scan {milestones}, \
         parsing every line {every_line_milestones}"
    );
    eprintln!(
        "parse: {milestones} milestones in {ours:.2}s; grep: {grep_count} lines in {grep_secs:.2}s; every line parsed: {lines} lines in {every_line_secs:.2}s ({:.0} MiB/s)",
        bytes / every_line_secs / (1 << 20) as f64
    );
    let mibs = |secs: f64| bytes / secs / (1 << 20) as f64;
    let ratio = mibs(ours) / mibs(grep_secs);
    // Best of three runs for the time, like the figures above; the largest peak of the three.
    let (mut offline_secs, mut offline_peak) = (f64::MAX, 0.0f64);
    for _ in 0..3 {
        let (secs, peak) = offline_parse(&path)?;
        offline_secs = offline_secs.min(secs);
        offline_peak = offline_peak.max(peak);
    }
    Ok(vec![
        Figure {
            name: format!("log parse+classify throughput ({} MiB)", size >> 20),
            value: mibs(ours),
            unit: "MiB/s".into(),
            baseline: mibs(grep_secs),
            ratio,
            goal: ">= 0.8x grep -F -c".into(),
            met: ratio >= 0.8,
        },
        Figure {
            name: "log parse with lines published".into(),
            value: mibs(every_line_secs),
            unit: "MiB/s".into(),
            baseline: mibs(grep_secs),
            ratio: mibs(every_line_secs) / mibs(grep_secs),
            goal: ">= 1024 MiB/s".into(),
            met: mibs(every_line_secs) >= 1024.0,
        },
        Figure {
            name: format!(
                "sup-logwatch parse throughput ({} MiB file, output discarded)",
                size >> 20
            ),
            value: mibs(offline_secs),
            unit: "MiB/s".into(),
            baseline: mibs(grep_secs),
            ratio: mibs(offline_secs) / mibs(grep_secs),
            goal: ">= 1024 MiB/s".into(),
            met: mibs(offline_secs) >= 1024.0,
        },
        Figure {
            name: format!(
                "sup-logwatch parse, peak memory ({} MiB file, {:.1} s)",
                size >> 20,
                offline_secs
            ),
            value: offline_peak,
            unit: "MiB".into(),
            baseline: bytes / (1 << 20) as f64,
            ratio: offline_peak / (bytes / (1 << 20) as f64),
            goal: "<= 64 MiB".into(),
            met: offline_peak <= 64.0,
        },
    ])
}

/// `sup-logwatch parse` over the file, its output thrown away: how long it takes and its peak
/// resident memory (sampled from /proc while it runs).
fn offline_parse(path: &Path) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let mut child = Command::new(crate::failover::bin("sup-logwatch")?)
        .arg("parse")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running sup-logwatch parse")?;
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(rss) = crate::scale::rss_mib(child.id()) {
            peak = peak.max(rss);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    anyhow::ensure!(status.success(), "sup-logwatch parse: {status}");
    Ok((t.elapsed().as_secs_f64(), peak))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Starts nats-server and a release sup-logwatch, appends milestone lines one at a time and
/// times each until its event arrives.
pub async fn milestone_latency(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let samples = if quick { 300 } else { 1000 };
    let nats = sup_testkit::NatsServer::start()?;
    let root = tempfile::tempdir()?;
    let folder = root.path().join("s1.corp.example.com").join("Logs");
    std::fs::create_dir_all(&folder)?;
    let admin = sup_testkit::free_port()?;
    let config = root.path().join("logwatch.toml");
    std::fs::write(
        &config,
        format!(
            "discover = false\npoll_interval_ms = 500\npublish_lines = true\nadmin_listen = \"127.0.0.1:{admin}\"\nlog_format = \"json\"\n[[watch]]\nsite = \"CEN\"\nserver = \"s1.corp.example.com\"\nfolder = \"{}\"\nlogs = [\"WCM.log\"]\n[nats]\nurl = \"{}\"\n",
            folder.display(),
            nats.url()
        ),
    )?;
    let mut watcher = crate::failover::spawn_env(
        "sup-logwatch",
        &["run", "--config", &config.display().to_string()],
        &[],
        &root.path().join("logwatch.log"),
    )?;
    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    let sub = bus
        .subscribe_events(&sup_bus::subjects::event(
            "CEN",
            sup_bus::subjects::kind::MILESTONE,
        ))
        .await?;
    let mut sub = std::pin::pin!(sub);
    // Wait for the watcher: it creates the streams, then follows the (empty) file.
    let log = folder.join("WCM.log");
    OpenOptions::new().create(true).append(true).open(&log)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 20 {
        let line = format!(
            "There are no unhealthy WSUS Server components on WSUS Server s1.corp.example.com ({i})  $$<SMS_WSUS_CONTROL_MANAGER><11-26-2026 17:09:33.123+480><thread=1 (0x1)>\r\n"
        );
        let t = Instant::now();
        {
            let mut f = OpenOptions::new().append(true).open(&log)?;
            f.write_all(line.as_bytes())?;
        }
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
        anyhow::ensure!(
            matches!(got, Ok(Some(_))),
            "no milestone event within 5 s for line {i}"
        );
        // The first lines warm up connections and the watcher's notifications.
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    watcher.kill();
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    Ok(vec![
        Figure {
            name: format!("milestone latency p50 ({samples} appends)"),
            value: p50,
            unit: "ms".into(),
            baseline: 50.0,
            ratio: p50 / 50.0,
            goal: "p99 <= 50 ms".into(),
            met: p50 <= 50.0,
        },
        Figure {
            name: format!("milestone latency p99 ({samples} appends)"),
            value: p99,
            unit: "ms".into(),
            baseline: 50.0,
            ratio: p99 / 50.0,
            goal: "<= 50 ms".into(),
            met: p99 <= 50.0,
        },
    ])
}
