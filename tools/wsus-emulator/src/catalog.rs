//! A synthetic update catalog tagged with the real classification and product GUIDs and
//! language codes, so a synchronization's counts depend on the subscription.

use sup_core::catalog::{CLASSIFICATIONS, LANGUAGES, PRODUCTS};

#[derive(Debug, Clone)]
pub struct Update {
    pub id: String,
    pub title: String,
    pub classification: &'static str,
    pub product: &'static str,
    pub language: &'static str,
}

/// Two updates for each product of the era and each of the eight classifications: one
/// language-neutral ("all"), one for a language that cycles through a few.
pub fn updates() -> Vec<Update> {
    let languages = ["en", "de", "fr", "ja"];
    let mut out = Vec::new();
    let mut i: u32 = 0;
    for p in PRODUCTS {
        for c in CLASSIFICATIONS {
            for lang in ["all", languages[(i as usize / 2) % languages.len()]] {
                out.push(Update {
                    id: format!(
                        "{:08x}-5eed-4c0d-9a7e-{:012x}",
                        0x1000_0000 + i,
                        u64::from(i) * 7919
                    ),
                    title: format!(
                        "{} for {} (KB{})",
                        c.title.trim_end_matches('s'),
                        p.title,
                        950_000 + i
                    ),
                    classification: c.id,
                    product: p.id,
                    language: lang,
                });
                i += 1;
            }
        }
    }
    out
}

/// How many updates a subscription selects: classification and product both subscribed, and
/// the language subscribed (or language-neutral). Empty lists select nothing, as in WSUS.
pub fn selected(classifications: &[String], products: &[String], languages: &[String]) -> usize {
    let langs: Vec<String> = languages
        .iter()
        .map(|l| {
            LANGUAGES
                .iter()
                .find(|e| e.id == l.as_str() || e.title.eq_ignore_ascii_case(l))
                .map(|e| e.id.to_string())
                .unwrap_or_else(|| l.to_ascii_lowercase())
        })
        .collect();
    updates()
        .iter()
        .filter(|u| {
            classifications
                .iter()
                .any(|c| c.eq_ignore_ascii_case(u.classification))
        })
        .filter(|u| products.iter().any(|p| p.eq_ignore_ascii_case(u.product)))
        .filter(|u| u.language == "all" || langs.iter().any(|l| l == u.language))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_subscription() {
        let n = PRODUCTS.len() * CLASSIFICATIONS.len() * 2;
        assert_eq!(updates().len(), n);
        let all_c: Vec<String> = CLASSIFICATIONS.iter().map(|c| c.id.to_string()).collect();
        let all_p: Vec<String> = PRODUCTS.iter().map(|p| p.id.to_string()).collect();
        let en = vec!["en".to_string()];
        let everything = selected(
            &all_c,
            &all_p,
            &["en".into(), "de".into(), "fr".into(), "ja".into()],
        );
        assert_eq!(everything, n);
        let some = selected(&all_c[..2], &all_p, &en);
        assert!(some > 0 && some < everything, "{some}");
        assert_eq!(selected(&[], &all_p, &en), 0);
    }
}
