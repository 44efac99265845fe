//! Any bytes, as a backlog: the buffer scanner finds exactly the milestones that splitting into
//! lines and classifying each finds, at the same offsets, and leaves the classifier the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sup_smslog::decode::Encoding;
use sup_smslog::{Classifier, parse_line, scan_milestones};

fuzz_target!(|data: &[u8]| {
    // The scanner is handed BOM-less bytes; `lines_of` would read a BOM as an encoding.
    if data.starts_with(&[0xFF, 0xFE]) || data.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return;
    }
    let mut by_line = Classifier::new();
    let expected: Vec<(usize, &'static str)> = sup_smslog::reader::lines_of(data)
        .into_iter()
        .filter_map(|l| {
            let record = parse_line(&l.text, Some(480));
            by_line
                .classify(&record, "X.log")
                .map(|m| (l.offset as usize, m.name))
        })
        .collect();
    let mut scanned = Classifier::new();
    if let Some(found) = scan_milestones(data, Encoding::Ansi, Some(480), &mut scanned, "X.log") {
        let got: Vec<(usize, &'static str)> =
            found.iter().map(|f| (f.offset, f.milestone.name)).collect();
        assert_eq!(got, expected);
        assert_eq!(scanned, by_line);
    } else {
        assert_eq!(scanned, Classifier::new());
    }
});
