//! Any text, as an operator's input: the site-file reader and validator and the schedule-token
//! decoder never panic; a rejected file always says which field broke which rule.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(v) = sup_core::spec::load_site_file(&text, &BTreeMap::new()) {
        assert!(!v.0.is_empty());
        for violation in &v.0 {
            assert!(!violation.path.is_empty() && !violation.rule.is_empty());
        }
    }
    let _ = sup_core::token::decode(&text);
    let _ = sup_core::schedule::parse_text(&text);
});
