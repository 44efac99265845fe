//! The workspace's boundaries, checked over its sources: only `sup-bus` knows how the bus is
//! laid out (subjects, key formats, streams and buckets) and talks to NATS, and the services
//! stay in small rooms. A change that crosses a boundary fails here, naming file and line.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, except build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The sources that must not know the bus's layout nor NATS: every crate, service and tool
/// but `sup-bus` itself and the test kit (which inspects streams from outside on purpose).
/// The integration tests are not scanned: they talk to the server with the stock client to
/// check its refusals as an outsider would.
fn outside_the_bus() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for group in ["crates", "services", "tools"] {
        files.extend(rust_files(&root.join(group)));
    }
    files
        .into_iter()
        .filter(|p| {
            !p.starts_with(root.join("crates/sup-bus"))
                && !p.starts_with(root.join("crates/sup-testkit"))
        })
        .collect()
}

/// String literals that spell the bus's layout: subjects, stream and KV subjects, and key
/// formats of the buckets.
const LAYOUT: &[&str] = &[
    "\"sup.evt.",
    "\"sup.cmd.",
    "\"sup.log.",
    "\"sup.ce.",
    "\"$KV.",
    "\"KV_",
    "\"SUP_EVENTS\"",
    "\"SUP_COMMANDS\"",
    "\"SUP_LOGS\"",
    "\"SUP_CLOUDEVENTS\"",
    ".want.",
    "{}.sched\"",
    "{}.run\"",
    "{}.sync\"",
    "{}.drift\"",
    "{}.roles\"",
    "\"op.{",
    "\"cmd.{",
    "\"announced.",
];

/// Bucket names as string literals. Two of them are also metric names (`sup_roles`,
/// `sup_health`), which a registration names on the line after `register(`.
const BUCKETS: &[&str] = &[
    "\"sup_sites\"",
    "\"sup_roles\"",
    "\"sup_active\"",
    "\"sup_ops\"",
    "\"sup_positions\"",
    "\"sup_health\"",
];

fn violations(files: &[PathBuf], check: impl Fn(&str, &str) -> Option<String>) -> Vec<String> {
    let root = root();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let mut previous = "";
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//")
                && let Some(what) = check(code, previous)
            {
                out.push(format!(
                    "{}:{}: {what}: {}",
                    f.strip_prefix(&root).unwrap_or(f).display(),
                    n + 1,
                    code
                ));
            }
            if !code.is_empty() {
                previous = code;
            }
        }
    }
    out
}

#[test]
fn no_service_or_tool_spells_a_subject_key_format_or_bucket() {
    let found = violations(&outside_the_bus(), |line, previous| {
        if let Some(p) = LAYOUT.iter().find(|p| line.contains(*p)) {
            return Some(format!("bus layout {p}"));
        }
        let metric = previous.ends_with("register(");
        BUCKETS
            .iter()
            .find(|b| line.contains(*b) && !metric)
            .map(|b| format!("bucket name {b}"))
    });
    assert!(
        found.is_empty(),
        "only sup-bus names subjects, keys and buckets (use sup_bus::subjects and the Bus's \
         bucket handles):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_bus_and_the_test_kit_use_the_nats_client() {
    let mut found = violations(&outside_the_bus(), |line, _| {
        line.contains("async_nats")
            .then(|| "the NATS client used directly".to_string())
    });
    let root = root();
    for group in ["crates", "services", "tools"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == "sup-bus" || name == "sup-testkit" {
                continue;
            }
            let manifest = e.path().join("Cargo.toml");
            if std::fs::read_to_string(&manifest).is_ok_and(|m| m.contains("async-nats")) {
                found.push(format!(
                    "{group}/{}/Cargo.toml: depends on async-nats",
                    name.to_string_lossy()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "only sup-bus (and the test kit) talk to NATS:\n{}",
        found.join("\n")
    );
}

/// About 600 lines at most per file of a service or of supctl: a file past that holds more
/// than one idea.
const ROOM: usize = 600;

#[test]
fn services_and_supctl_are_small_rooms() {
    let root = root();
    let mut files = rust_files(&root.join("services"));
    files.extend(rust_files(&root.join("tools/supctl")));
    let big: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > ROOM).then(|| {
                format!(
                    "{}: {lines} lines",
                    f.strip_prefix(&root).unwrap_or(f).display()
                )
            })
        })
        .collect();
    assert!(
        big.is_empty(),
        "files over {ROOM} lines; split them by concept:\n{}",
        big.join("\n")
    );
}

#[test]
fn the_checks_see_the_sources_they_guard() {
    // A moved directory would make every check above pass vacuously.
    let files = outside_the_bus();
    for expected in [
        "services/coordinator/src/lib.rs",
        "services/health/src/lib.rs",
        "tools/supctl/src/main.rs",
        "tools/sup-chaos/src/lib.rs",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "{expected} is not scanned"
        );
    }
    let inside = violations(
        &[root().join("crates/sup-bus/src/subjects.rs")],
        |line, _| LAYOUT.iter().any(|p| line.contains(*p)).then(String::new),
    );
    assert!(
        !inside.is_empty(),
        "the layout patterns match sup-bus's own subjects"
    );
}
