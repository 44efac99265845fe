//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use sup_smslog::{Classifier, parse_line};

use crate::records;

/// Prints every record of `files`. Returns the number of records printed.
pub fn run(
    files: &[std::path::PathBuf],
    json: bool,
    tz_bias: Option<i32>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut count = 0;
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let log = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Decoded and assembled exactly as the live watcher does, the file read as finished.
        let lines = read_all(file)?;
        let mut classifier = Classifier::new();
        let mut line_no = 1u64;
        let mut counted_to = 0usize;
        let unit = if bytes.starts_with(&[0xFF, 0xFE]) {
            2
        } else {
            1
        };
        for l in lines {
            let offset = (l.offset as usize).min(bytes.len());
            line_no += count_newlines(&bytes[counted_to..offset], unit);
            counted_to = offset;
            let record = parse_line(&l.text, tz_bias);
            let milestone = classifier.classify(&record, &log);
            let name = file.display().to_string();
            if json {
                writeln!(
                    out,
                    "{}",
                    records::json(&name, line_no, &record, milestone.as_ref())
                )?;
            } else {
                let time = record
                    .time_utc()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
                    .or_else(|| {
                        record
                            .time_local
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    })
                    .unwrap_or_else(|| "-".into());
                let ms = milestone.as_ref().map(|m| m.name).unwrap_or("-");
                writeln!(
                    out,
                    "{name}:{line_no:<6} {time:<24} {:<9} {:<32} {ms:<24} {}",
                    record.format.as_str(),
                    record.component.as_deref().unwrap_or("-"),
                    record.display_message().replace('\n', " ⏎ ")
                )?;
            }
            count += 1;
        }
    }
    Ok(count)
}

fn count_newlines(bytes: &[u8], unit: usize) -> u64 {
    if unit == 2 {
        bytes.chunks_exact(2).filter(|c| c == &[b'\n', 0]).count() as u64
    } else {
        memchr_count(bytes)
    }
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

fn read_all(file: &Path) -> anyhow::Result<Vec<sup_smslog::RawLine>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(sup_smslog::reader::lines_of(&bytes))
}
