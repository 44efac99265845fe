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

/// 320 updates spread over the eight classifications, the products of the era and a few
/// languages (language-neutral updates say "all").
pub fn updates() -> Vec<Update> {
    let products: Vec<_> = PRODUCTS.iter().filter(|p| !p.title.contains(',')).collect();
    let languages = ["all", "en", "de", "fr", "ja"];
    (0..320u32)
        .map(|i| {
            let c = &CLASSIFICATIONS[(i % 8) as usize];
            let p = products[(i as usize * 7) % products.len()];
            let lang = languages[(i % 5) as usize];
            Update {
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
            }
        })
        .collect()
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
        assert_eq!(updates().len(), 320);
        let all_c: Vec<String> = CLASSIFICATIONS.iter().map(|c| c.id.to_string()).collect();
        let all_p: Vec<String> = PRODUCTS.iter().map(|p| p.id.to_string()).collect();
        let en = vec!["en".to_string()];
        let everything = selected(
            &all_c,
            &all_p,
            &["en".into(), "de".into(), "fr".into(), "ja".into()],
        );
        assert_eq!(everything, 320);
        let some = selected(&all_c[..2], &all_p, &en);
        assert!(some > 0 && some < everything, "{some}");
        assert_eq!(selected(&[], &all_p, &en), 0);
    }
}
