//! How an edit of the site control file goes through the SMS Provider (2007 SDK cc145509,
//! cc143820, cc144568, cc145519): a session handle, a refresh of the site's copy, the changes,
//! the commit, and the release; without the commit the changes are discarded. The handle travels
//! as the WMI context value `SessionHandle` on every call between (over WS-Management, the
//! option `wmi:SessionHandle`).

use crate::scf::{CategorySubscription, Component, SysResUse};

/// One change to the control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateRow(SysResUse),
    PutRow(SysResUse),
    DeleteRow(SysResUse),
    PutComponent(Component),
    Subscribe(CategorySubscription),
}

/// One call of an edit, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `SMS_SiteControlFile.GetSessionHandle()`.
    GetSessionHandle,
    /// `SMS_SiteControlFile.RefreshSCF(SiteCode)`.
    Refresh {
        site_code: String,
    },
    Change(Change),
    /// `SMS_SiteControlFile.CommitSCF(SiteCode)`.
    Commit {
        site_code: String,
    },
    /// `SMS_SiteControlFile.ReleaseSessionHandle(SessionHandle)`: always, committed or not.
    Release,
}

/// The calls of an edit of `site_code` that makes `changes`. An edit with no change is no call.
pub fn edit(site_code: &str, changes: Vec<Change>) -> Vec<Step> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut steps = vec![
        Step::GetSessionHandle,
        Step::Refresh {
            site_code: site_code.into(),
        },
    ];
    steps.extend(changes.into_iter().map(Step::Change));
    steps.push(Step::Commit {
        site_code: site_code.into(),
    });
    steps.push(Step::Release);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scf::{Component, ComponentName};

    #[test]
    fn an_edit_is_refresh_changes_commit_release() {
        let c = Component::new(
            "CEN",
            ComponentName::WsusSyncManager,
            "cen-site.corp.example.com",
        );
        let steps = edit("CEN", vec![Change::PutComponent(c.clone())]);
        assert_eq!(
            steps,
            vec![
                Step::GetSessionHandle,
                Step::Refresh {
                    site_code: "CEN".into()
                },
                Step::Change(Change::PutComponent(c)),
                Step::Commit {
                    site_code: "CEN".into()
                },
                Step::Release,
            ]
        );
        assert!(edit("CEN", Vec::new()).is_empty());
    }
}
