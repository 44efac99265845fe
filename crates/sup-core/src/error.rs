//! Violations: every broken rule names the field path and the rule.

use std::fmt;

/// One broken rule at one place in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, e.g. `site[CEN].software_update_point[1].https_port`.
    pub path: String,
    /// Which rule, a stable snake_case name scripts can match on.
    pub rule: &'static str,
    /// What is wrong and how to fix it, for a person.
    pub message: String,
}

impl Violation {
    pub fn new(path: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.path, self.message, self.rule)
    }
}

/// All the violations found in one spec; a spec with any is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// True when some violation is at `path` and breaks `rule`.
    pub fn has(&self, path: &str, rule: &str) -> bool {
        self.0.iter().any(|v| v.path == path && v.rule == rule)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Collects violations while a spec is walked.
#[derive(Debug, Default)]
pub(crate) struct Collector(pub(crate) Vec<Violation>);

impl Collector {
    pub(crate) fn push(
        &mut self,
        path: impl Into<String>,
        rule: &'static str,
        msg: impl Into<String>,
    ) {
        self.0.push(Violation::new(path, rule, msg));
    }
}
