//! Log benchmarks: parse + classify throughput beside `grep -F -c` on the same file, and the
//! latency from a line appended to a watched file to its milestone event delivered by NATS.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use sup_smslog::{Classifier, parse_line};

use crate::Figure;

const NEEDLE: &str = "Installation was successful";

/// Writes `size` bytes of realistic SMS-format lines (every 1000th a milestone) to `path`.
fn generate(path: &Path, size: u64) -> anyhow::Result<u64> {
    let messages = [
        "Checking for supported version of WSUS (min WSUS 3.0 SP2 + KB2720211 + KB2734608)",
        "Successfully connected to server: CE1SITE.CONTOSO.COM, port: 8530, useSSL: False",
        "sync: WSUS synchronizing updates, processed 122 out of 130 items (93%), ETA in 00:00:03",
        "Synchronizing update af5eb87e-cdd6-40bf-984f-5d0630406de8 - Definition Update for Microsoft Endpoint Protection - KB2461484",
        "Waiting for changes for 59 minutes",
        "There are no unhealthy WSUS Server components on WSUS Server SUP01.CONTOSO.COM",
    ];
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written = 0u64;
    let mut n = 0u64;
    let mut hits = 0;
    while written < size {
        n += 1;
        let msg = if n.is_multiple_of(1000) {
            hits += 1;
            "Installation was successful."
        } else {
            messages[(n % messages.len() as u64) as usize]
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

/// Parses and classifies every line; returns (lines, milestones).
fn parse_file(path: &Path) -> anyhow::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut carry = Vec::new();
    let mut classifier = Classifier::new();
    let (mut lines, mut milestones) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = memchr_newline(&carry[start..]) {
            let end = start + i;
            let text = sup_smslog::decode::decode_line(
                &carry[start..end],
                sup_smslog::decode::Encoding::Ansi,
            );
            let record = parse_line(&text, None);
            if classifier.classify(&record, "WCM.log").is_some() {
                milestones += 1;
            }
            lines += 1;
            start = end + 1;
        }
        carry.drain(..start);
    }
    Ok((lines, milestones))
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

pub fn parse_throughput(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let size: u64 = if quick { 100 << 20 } else { 1 << 30 };
    let dir = Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("sms-{}m.log", size >> 20));
    let expected_hits = if path.metadata().map(|m| m.len() >= size).unwrap_or(false) {
        None
    } else {
        eprintln!("generating {} ({} MiB)...", path.display(), size >> 20);
        Some(generate(&path, size)?)
    };
    let bytes = path.metadata()?.len() as f64;
    // Warm the page cache so both sides read from memory.
    let _ = parse_file(&path)?;
    let t = Instant::now();
    let grep = Command::new("grep")
        .args(["-F", "-c", NEEDLE])
        .arg(&path)
        .output()
        .context("running grep")?;
    let grep_secs = t.elapsed().as_secs_f64();
    let grep_count: u64 = String::from_utf8_lossy(&grep.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let t = Instant::now();
    let (lines, milestones) = parse_file(&path)?;
    let ours = t.elapsed().as_secs_f64();
    if let Some(h) = expected_hits {
        anyhow::ensure!(grep_count == h, "grep counted {grep_count}, expected {h}");
    }
    eprintln!(
        "parse: {lines} lines, {milestones} milestones in {ours:.2}s; grep: {grep_count} in {grep_secs:.2}s"
    );
    let mibs = |secs: f64| bytes / secs / (1 << 20) as f64;
    let ratio = mibs(ours) / mibs(grep_secs);
    Ok(vec![Figure {
        name: format!("log parse+classify throughput ({} MiB)", size >> 20),
        value: mibs(ours),
        unit: "MiB/s".into(),
        baseline: mibs(grep_secs),
        ratio,
        goal: ">= 0.5x grep -F -c".into(),
        met: ratio >= 0.5,
    }])
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
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("sup-logwatch");
    anyhow::ensure!(
        bin.exists(),
        "{} not built: build sup-logwatch in the same profile",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()?;
    let client = sup_bus::async_nats::connect(nats.url()).await?;
    let mut sub = client.subscribe("sup.evt.CEN.milestone").await?;
    client.flush().await?;
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
    let _ = child.kill();
    let _ = child.wait();
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
