//! Any bytes, as a log file: decoding, line splitting, parsing and classification never panic,
//! and the reader's offsets stay inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sup_smslog::{Classifier, parse_line};

fuzz_target!(|data: &[u8]| {
    let mut classifier = Classifier::new();
    for line in sup_smslog::reader::lines_of(data) {
        assert!(line.offset as usize <= data.len());
        let record = parse_line(&line.text, Some(480));
        let _ = record.time_utc();
        let _ = record.display_message();
        let _ = classifier.classify(&record, "WCM.log");
    }
    let _ = Classifier::restore(&String::from_utf8_lossy(data));
});
