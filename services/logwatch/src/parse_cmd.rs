//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::io::Write;

use anyhow::Context as _;
use sup_smslog::{Classifier, Milestone, parse_record};

use crate::columns::Columns;
use crate::records;

/// How many bytes of lines the reading thread gathers before handing them to the printing one.
const BATCH_TEXT: usize = 256 * 1024;
/// How many lines it gathers at most: short or empty lines fill a batch's list, not its text.
const BATCH_LINES: usize = 4096;
/// How many batches may wait for the printing thread: memory stays bounded whatever the file.
const BATCHES_WAITING: usize = 4;
/// How many bytes of printed lines are gathered before they are written out.
const OUTPUT_BATCH: usize = 64 * 1024;

/// Lines read, on their way to be printed: their text one after another, and each line's number,
/// end in the text and milestone.
#[derive(Default)]
struct Batch {
    text: String,
    lines: Vec<(u64, usize, Option<Milestone>)>,
}

/// How to print a file's records.
#[derive(Clone, Copy)]
struct Printing<'a> {
    /// The file as it is named in the output.
    name: &'a str,
    json: bool,
    tz_bias: Option<i32>,
}

/// Prints every record of `files`. Returns the number of records printed.
///
/// Each file is read on this thread, which splits it into lines and classifies the lines that
/// may hold a milestone (in order: a milestone can depend on the lines before it), and printed on
/// another, which parses every line and writes it out: the two halves of the work take about as
/// long as each other.
pub fn run(
    files: &[std::path::PathBuf],
    json: bool,
    tz_bias: Option<i32>,
    out: &mut (impl Write + Send),
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
        let how = Printing {
            name: &name,
            json,
            tz_bias,
        };
        let (read, printed) = print_file(source, &log, how, out);
        match printed {
            Ok(n) => count += n,
            // The reader of the output went away (`| head`): stop quietly.
            Err(PrintError { printed, error })
                if error.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(count + printed);
            }
            Err(PrintError { error, .. }) => return Err(error).context("writing the output"),
        }
        read.with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(count)
}

/// Why the printing thread stopped, and how many records it had printed.
struct PrintError {
    printed: u64,
    error: std::io::Error,
}

/// Reads `source` and prints its records to `out`: what the reading ended with, and what the
/// printing did (how many records it printed).
fn print_file(
    source: impl std::io::Read,
    log: &str,
    how: Printing<'_>,
    out: &mut (impl Write + Send),
) -> (std::io::Result<()>, Result<u64, PrintError>) {
    let (to_printer, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_WAITING);
    // Printed batches come back emptied, to be filled again rather than allocated anew.
    let (to_reader, printed_batches) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let printer = scope.spawn(move || print_batches(batches, &to_reader, how, out));
        let mut classifier = Classifier::new();
        let mut batch = Batch::default();
        // A send fails only once the printer has stopped; its own error says why.
        let printer_gone = || std::io::Error::other("the printing thread stopped");
        let read = sup_smslog::reader::read_classified(
            source,
            how.tz_bias,
            log,
            &mut classifier,
            |line_no, line, milestone| {
                // Lines of columns name the milestone only: its fields are let go on this
                // thread, which allocated them.
                let milestone = match milestone {
                    Some(m) if !how.json => Some(Milestone {
                        name: m.name,
                        fields: Vec::new(),
                    }),
                    m => m,
                };
                batch.text.push_str(line.text);
                batch.lines.push((line_no, batch.text.len(), milestone));
                if batch.text.len() >= BATCH_TEXT || batch.lines.len() >= BATCH_LINES {
                    let next = printed_batches.try_recv().unwrap_or_default();
                    let full = std::mem::replace(&mut batch, next);
                    to_printer.send(full).map_err(|_| printer_gone())?;
                }
                Ok(())
            },
        );
        // The whole lines read before an error are printed too.
        let sent = to_printer.send(batch).map_err(|_| printer_gone());
        let read = read.and(sent);
        drop(to_printer);
        let printed = printer.join().unwrap_or_else(|_| {
            Err(PrintError {
                printed: 0,
                error: std::io::Error::other("the printing thread panicked"),
            })
        });
        (read, printed)
    })
}

/// Parses and prints the lines of each batch in turn, handing each batch back emptied.
fn print_batches(
    batches: std::sync::mpsc::Receiver<Batch>,
    to_reader: &std::sync::mpsc::Sender<Batch>,
    how: Printing<'_>,
    out: &mut impl Write,
) -> Result<u64, PrintError> {
    // Lines formatted, and of those written out.
    let (mut printed, mut written) = (0, 0);
    let mut output = Vec::with_capacity(OUTPUT_BATCH + 4096);
    let mut columns = Columns::default();
    let fail = |printed, error| PrintError { printed, error };
    for mut batch in batches {
        let mut start = 0;
        for (line_no, end, milestone) in batch.lines.drain(..) {
            let text = batch.text.get(start..end).unwrap_or_default();
            start = end;
            let record = parse_record(text, how.tz_bias);
            if how.json {
                let line = records::json(how.name, line_no, &record, milestone.as_ref());
                writeln!(output, "{line}").map_err(|e| fail(written, e))?;
            } else {
                let milestone = milestone.as_ref().map_or("-", |m| m.name);
                columns.write(&mut output, (how.name, line_no), &record, milestone);
            }
            printed += 1;
            if output.len() >= OUTPUT_BATCH {
                out.write_all(&output).map_err(|e| fail(written, e))?;
                output.clear();
                written = printed;
            }
        }
        batch.text.clear();
        // The reader may have finished already; the batch is then simply dropped.
        let _ = to_reader.send(batch);
    }
    out.write_all(&output)
        .and_then(|()| out.flush())
        .map_err(|e| fail(written, e))?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::formatted;

    /// A file of `lines` lines in the mix of a busy SUP's logs, with a role setup in it.
    fn mixed_log(lines: usize) -> String {
        let mix = [
            "Synchronizing update af5eb87e-cdd6-40bf-984f-5d0630406de8 - Definition Update  $$<SMS_WSUS_SYNC_MANAGER><11-26-2026 17:09:33.123+480><thread=3404 (0xD4C)>",
            "There are no unhealthy WSUS Server components on WSUS Server SUP01  $$<SMS_WSUS_CONTROL_MANAGER><11-26-2026 17:09:34.000+480><thread=1 (0x1)>",
            "<11/26/26 17:09:35> SMSWSUS Setup Started....",
            "<11/26/26 17:09:36> ERROR: WSUS 3.0 SP2 is not installed",
            "<11/26/26 17:09:37> ~RoleSetup().",
            "<![LOG[Starting Sync]LOG]!><time=\"10:00:00.000+480\" date=\"01-16-2014\" component=\"x\" context=\"\" type=\"1\" thread=\"1\" file=\"\">",
            "a line with no framing at all, ~~ and a second part",
            "",
        ];
        (0..lines)
            .map(|i| format!("{}\r\n", mix[i * 7 % mix.len()]))
            .collect()
    }

    /// What printing `path` (read as `WCM.log`) gives, one line at a time on one thread, each
    /// written with `format!`.
    fn printed_in_turn(path: &std::path::Path, json: bool) -> String {
        let text = std::fs::read(path).expect("read");
        let name = path.display().to_string();
        let mut classifier = Classifier::new();
        let mut out = Vec::new();
        sup_smslog::reader::read_classified(
            &text[..],
            Some(-60),
            "WCM.log",
            &mut classifier,
            |n, line, m| {
                let record = parse_record(line.text, Some(-60));
                if json {
                    writeln!(out, "{}", records::json(&name, n, &record, m.as_ref()))
                } else {
                    let milestone = m.as_ref().map_or("-", |m| m.name);
                    out.extend_from_slice(formatted(&name, n, &record, milestone).as_bytes());
                    Ok(())
                }
            },
        )
        .expect("read");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_file_of_many_batches_prints_as_one_read_in_turn() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("WCM.log");
        // Several of the reading thread's batches, and more than the batches that may wait.
        std::fs::write(&path, mixed_log(40_000)).expect("write");
        for json in [false, true] {
            let mut out = Vec::new();
            let printed = run(std::slice::from_ref(&path), json, Some(-60), &mut out).expect("run");
            assert_eq!(printed, 40_000);
            let out = String::from_utf8(out).expect("UTF-8");
            assert!(out == printed_in_turn(&path, json), "json: {json}");
        }
    }

    #[test]
    fn a_file_of_empty_lines_prints_every_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("WCM.log");
        // Empty lines fill a batch's list of lines, not its text.
        std::fs::write(&path, "\r\n".repeat(30_000)).expect("write");
        let mut out = Vec::new();
        let printed = run(std::slice::from_ref(&path), false, None, &mut out).expect("run");
        assert_eq!(printed, 30_000);
        assert!(String::from_utf8(out).expect("UTF-8") == printed_in_turn(&path, false));
    }

    /// Output that takes `room` bytes, then fails with `kind`.
    struct FailingAfter {
        room: usize,
        kind: std::io::ErrorKind,
    }

    impl Write for FailingAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_stops_quietly_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let (first, second) = (dir.path().join("WCM.log"), dir.path().join("WCM.lo_"));
        std::fs::write(&first, mixed_log(20_000)).expect("write");
        std::fs::write(&second, mixed_log(10)).expect("write");
        let files = [first, second];
        let mut closed = FailingAfter {
            room: 100_000,
            kind: std::io::ErrorKind::BrokenPipe,
        };
        let printed = run(&files, false, None, &mut closed).expect("a closed output is no error");
        assert!(printed < 20_000, "{printed} printed: the reading stopped");
        let mut broken = FailingAfter {
            room: 100_000,
            kind: std::io::ErrorKind::PermissionDenied,
        };
        let error = run(&files, false, None, &mut broken).expect_err("a broken output");
        assert!(
            format!("{error:#}").starts_with("writing the output"),
            "{error:#}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let error = run(&["/no/such/WCM.log".into()], false, None, &mut Vec::new())
            .expect_err("a missing file");
        assert!(
            format!("{error:#}").contains("/no/such/WCM.log"),
            "{error:#}"
        );
    }
}
