//! The two WSUS checks that make an installed role ready, kept per install.
//!
//! The log watcher publishes each file in the order it reads it, and files one after another,
//! so a WCM.log health line written after setup can reach the coordinator before the
//! SUPSetup.log line that says setup started (after a log-watcher backlog, say). Each check is
//! therefore kept with the time of its line: a setup start drops only the checks older than
//! itself, and a check older than the latest setup start is not taken. Where a line gave no
//! time (SUPSetup.log's stamps carry no zone, and the log watcher was given no bias for the
//! server), nothing tells one install from the next, and a setup start drops every check, as
//! it must to be safe.

use sup_proto::prost_types::Timestamp;
use sup_proto::v1;

fn key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

/// Records a setup start read at `line_time`. False when an older setup start than one already
/// seen: it was published late, and the later one has decided the role's lifecycle.
pub(super) fn setup_started(r: &mut v1::RoleStatus, line_time: Option<Timestamp>) -> bool {
    let Some(started) = line_time else {
        r.verified.clear();
        r.verified_at.clear();
        return true;
    };
    if r.setup_started
        .as_ref()
        .is_some_and(|seen| key(seen) > key(&started))
    {
        return false;
    }
    let at = std::mem::take(&mut r.verified_at);
    r.verified.retain(|name| {
        at.get(name)
            .is_some_and(|checked| key(checked) >= key(&started))
    });
    r.verified_at = at
        .into_iter()
        .filter(|(name, _)| r.verified.contains(name))
        .collect();
    r.setup_started = Some(started);
    true
}

/// Records check `name` passed at `line_time`. False when its line is older than the latest
/// setup start: it belongs to an earlier install.
///
/// A check seen again keeps its latest time, so that a reinstall whose checks arrive before its
/// setup start keeps them. That is a write per health line per role (an hourly cycle in the
/// product), which the role's record costs once an hour.
pub(super) fn check_passed(
    r: &mut v1::RoleStatus,
    name: &str,
    line_time: Option<Timestamp>,
) -> bool {
    if let (Some(checked), Some(started)) = (&line_time, &r.setup_started)
        && key(checked) < key(started)
    {
        return false;
    }
    if !r.verified.iter().any(|v| v == name) {
        r.verified.push(name.to_string());
        r.verified.sort();
    }
    if let Some(checked) = line_time
        && r.verified_at
            .get(name)
            .is_none_or(|seen| key(seen) < key(&checked))
    {
        r.verified_at.insert(name.to_string(), checked);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMPONENTS: &str = "wsus_components_healthy";
    const DATABASE: &str = "wsus_database_ok";

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn checks_read_before_their_setup_start_survive_it() {
        let mut r = v1::RoleStatus::default();
        assert!(check_passed(&mut r, COMPONENTS, at(120)));
        assert!(check_passed(&mut r, DATABASE, at(121)));
        assert!(setup_started(&mut r, at(100)));
        assert_eq!(r.verified, [COMPONENTS, DATABASE]);
    }

    #[test]
    fn a_setup_start_drops_the_checks_of_an_earlier_install() {
        let mut r = v1::RoleStatus::default();
        check_passed(&mut r, COMPONENTS, at(50));
        check_passed(&mut r, DATABASE, at(150));
        assert!(setup_started(&mut r, at(100)));
        assert_eq!(r.verified, [DATABASE]);
        assert_eq!(r.verified_at.len(), 1);
        assert!(
            !check_passed(&mut r, COMPONENTS, at(99)),
            "older than setup"
        );
        assert_eq!(r.verified, [DATABASE]);
    }

    #[test]
    fn an_older_setup_start_published_late_changes_nothing() {
        let mut r = v1::RoleStatus::default();
        setup_started(&mut r, at(200));
        check_passed(&mut r, COMPONENTS, at(210));
        let before = r.clone();
        assert!(!setup_started(&mut r, at(100)));
        assert_eq!(r, before);
    }

    #[test]
    fn lines_without_a_time_fall_back_to_clearing_at_setup_start() {
        let mut r = v1::RoleStatus::default();
        check_passed(&mut r, COMPONENTS, None);
        check_passed(&mut r, DATABASE, at(300));
        assert!(setup_started(&mut r, None));
        assert!(r.verified.is_empty() && r.verified_at.is_empty());
        // A check without a time after a timed setup start is taken: nothing says it is older.
        setup_started(&mut r, at(100));
        assert!(check_passed(&mut r, DATABASE, None));
        assert_eq!(r.verified, [DATABASE]);
    }

    #[derive(Clone, Debug)]
    enum Line {
        Setup(i64),
        Check(bool, i64),
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            (0i64..50).prop_map(Line::Setup),
            (any::<bool>(), 0i64..50).prop_map(|(c, t)| Line::Check(c, t)),
        ]
    }

    proptest! {
        /// Whatever order the lines arrive in, the checks kept are those whose latest line is
        /// no older than the latest setup start: the same as reading them in time order.
        #[test]
        fn the_checks_kept_do_not_depend_on_arrival_order(
            (lines, shuffled) in proptest::collection::vec(line(), 0..12)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        ) {
            let latest_setup = lines.iter().filter_map(|l| match l {
                Line::Setup(t) => Some(*t),
                _ => None,
            }).max();
            let mut expected: Vec<&str> = [COMPONENTS, DATABASE]
                .into_iter()
                .filter(|name| lines.iter().any(|l| matches!(l,
                    Line::Check(c, t) if (if *c { COMPONENTS } else { DATABASE }) == *name
                        && latest_setup.is_none_or(|s| *t >= s))))
                .collect();
            expected.sort();
            for arrival in [&lines, &shuffled] {
                let mut r = v1::RoleStatus::default();
                for l in arrival.iter() {
                    match l {
                        Line::Setup(t) => { setup_started(&mut r, at(*t)); }
                        Line::Check(c, t) => {
                            check_passed(&mut r, if *c { COMPONENTS } else { DATABASE }, at(*t));
                        }
                    }
                }
                prop_assert_eq!(&r.verified, &expected);
            }
        }
    }
}
