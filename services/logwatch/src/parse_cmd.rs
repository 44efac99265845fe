//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::io::Write;

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
        let log = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.display().to_string();
        let source =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        // Decoded and assembled exactly as the live watcher does, the file read as finished, in
        // bounded steps: memory does not grow with the file.
        let mut classifier = Classifier::new();
        let mut output_failed = false;
        let printed = sup_smslog::reader::read_lines(source, |line_no, l| {
            let record = parse_line(&l.text, tz_bias);
            let milestone = classifier.classify(&record, &log);
            let written = if json {
                writeln!(
                    out,
                    "{}",
                    records::json(&name, line_no, &record, milestone.as_ref())
                )
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
                )
            };
            output_failed = written.is_err();
            count += 1;
            written
        });
        match printed {
            Ok(()) => {}
            // The reader of the output went away (`| head`): stop quietly.
            Err(e) if output_failed && e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(count);
            }
            Err(e) if output_failed => return Err(e).context("writing the output"),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
    Ok(count)
}
