//! Names ConfigMgr accepts: site codes, FQDNs, account names.

/// A site code is exactly three characters, A–Z and 0–9 (ConfigMgr stores it upper case).
pub fn is_site_code(code: &str) -> bool {
    code.len() == 3
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A fully qualified domain name: at least two labels of 1–63 letters, digits or hyphens (not at
/// either end), 253 characters at most, and a top label that is not all digits (so an IPv4
/// address is not an FQDN).
pub fn is_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(|l| label_ok(l))
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Host names compare case-insensitively; they are stored lower case without a trailing dot.
pub fn normalize_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `DOMAIN\user` or `user@domain.tld`, as the wizard's account dialog accepts.
pub fn is_account_name(account: &str) -> bool {
    if let Some((domain, user)) = account.split_once('\\') {
        return !domain.is_empty()
            && !user.is_empty()
            && !user.contains('\\')
            && !domain.contains(char::is_whitespace);
    }
    if let Some((user, domain)) = account.split_once('@') {
        return !user.is_empty() && is_fqdn(domain);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_codes() {
        for ok in ["CEN", "A01", "999"] {
            assert!(is_site_code(ok), "{ok}");
        }
        for bad in ["", "CE", "CENT", "cen", "C-N", "CÉN"] {
            assert!(!is_site_code(bad), "{bad}");
        }
    }

    #[test]
    fn fqdns() {
        for ok in [
            "a.b",
            "cen-sup01.corp.example.com",
            "X1.Example.COM.",
            "sup.example.com",
        ] {
            assert!(is_fqdn(ok), "{ok}");
        }
        for bad in [
            "",
            "cen-sup01",
            "-a.example.com",
            "a-.example.com",
            "a..b",
            "10.0.0.1",
            "under_score.example.com",
            "space .example.com",
        ] {
            assert!(!is_fqdn(bad), "{bad}");
        }
        assert!(!is_fqdn(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn accounts() {
        assert!(is_account_name("CORP\\svc-cm-install"));
        assert!(is_account_name("svc@corp.example.com"));
        assert!(!is_account_name("svc"));
        assert!(!is_account_name("\\svc"));
        assert!(!is_account_name("CORP\\"));
    }
}
