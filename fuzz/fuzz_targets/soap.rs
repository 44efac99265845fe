//! Any bytes, as WSUS wire text: the emulator's SOAP request parser, the health probe's answer
//! classifier and its PEM reader never panic, and an answer is never both fine and an error page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sup_wsus::probe::{ProbeResult, classify_soap, pem_certificates};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wsus_emulator::soap::parse(&text);
    for content_type in ["text/xml; charset=utf-8", "text/html", ""] {
        let (result, _) = classify_soap(200, content_type, &text, &["GetConfigResponse"]);
        if content_type == "text/html" {
            assert_eq!(result, ProbeResult::HtmlError);
        }
        let _ = classify_soap(500, content_type, &text, &[]);
    }
    let _ = pem_certificates(data);
});
