//! Which WSUS a ConfigMgr 2007 software update point accepts.

/// WSUS 3.0 SP1, the oldest WSUS ConfigMgr 2007 SP1 supports ("Configuration Manager 2007 SP1
/// requires WSUS 3.0 SP1", systemscenter.ru smsv4 f59d403a). WSUS's registry `VersionString`
/// is Major.Minor.Build.Revision (WSUS 3.0 Appendix G); SP2 is 3.2.7600.226.
pub const MIN_WSUS_VERSION: [u32; 4] = [3, 1, 6001, 65];

/// `MIN_WSUS_VERSION` as WSUS writes versions.
pub fn min_wsus_version() -> String {
    MIN_WSUS_VERSION.map(|p| p.to_string()).join(".")
}

/// A dotted version's four numbers (missing ones are 0); `None` when it is not one.
pub fn parse(v: &str) -> Option<[u32; 4]> {
    let mut out = [0u32; 4];
    let mut n = 0;
    for part in v.trim().split('.') {
        *out.get_mut(n)? = part.trim().parse().ok()?;
        n += 1;
    }
    (n >= 2).then_some(out)
}

/// Whether `version` is a WSUS 3.0 at SP1 or later (WSUS 3.x; WSUS 4 and later are another
/// product generation, for ConfigMgr 2012).
pub fn supported(version: &str) -> bool {
    parse(version).is_some_and(|v| v[0] == 3 && v >= MIN_WSUS_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sp1_and_later_of_wsus_3() {
        assert!(supported("3.1.6001.65"));
        assert!(supported("3.2.7600.226"));
        assert!(supported(" 3.2.7600.256 "));
        assert!(!supported("3.1.6001.64"));
        assert!(!supported("3.0.6000.374"), "WSUS 3.0 before SP1");
        assert!(!supported("6.2.9200.16384"), "WSUS 4");
        assert!(!supported("3.x"));
        assert!(!supported(""));
        assert!(!supported("3.1.6001.65.1"));
        assert_eq!(min_wsus_version(), "3.1.6001.65");
    }
}
