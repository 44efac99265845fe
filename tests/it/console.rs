//! The console in a real browser (Debian's Chromium, headless, driven over the DevTools
//! protocol) against the real stack running the example site file: every site and role shows,
//! a fault injected with `wsus-emulator ctl` shows on the open page without a reload, and an
//! operator signs in and runs Run Synchronization. Screenshots go to `target/console/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use sup_testkit::{NatsServer, Process, free_port};

use crate::emulator::ctl;
use crate::support::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/site.toml");
const TOKEN: &str = "console-test-operator-token";

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    headless_chrome::browser::default_executable()
        .map_err(|e| format!("{e}: install Chromium (make tools installs Debian's chromium)"))
        .expect("a Chromium to drive")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let dir = target.join("console");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

fn service(binary: &str, config: &std::path::Path, admin: u16, env: &[(&str, String)]) -> Process {
    let mut p = Process::start(binary, &["--config", config.to_str().expect("path")], env)
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    p.wait_port(admin, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{binary} up: {e}"));
    p.admin_port = Some(admin);
    p
}

/// The text of the page's `<main>` (what a person reads), or empty while it loads.
fn main_text(tab: &Tab) -> String {
    tab.evaluate(
        "document.querySelector('main') ? document.querySelector('main').innerText : ''",
        false,
    )
    .ok()
    .and_then(|r| r.value)
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_default()
}

fn eval_string(tab: &Tab, js: &str) -> String {
    tab.evaluate(js, false)
        .ok()
        .and_then(|r| r.value)
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default()
}

fn wait_for(what: &str, patience: Duration, mut check: impl FnMut() -> Option<String>) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < patience {
        match check() {
            None => return,
            Some(state) => last = state,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {patience:?}; last seen:\n{last}");
}

fn screenshot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let path = screenshots().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn the_console_shows_the_example_hierarchy_live_in_a_browser() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = coordinator(&nats);

    // The example's web sites on a loopback address of this process's own (their ports are
    // fixed by the file), CH2's 80/443 moved up.
    let pid = std::process::id();
    let listen_ip = format!("127.5.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
    let port_map = dir.path().join("port-map.toml");
    let emu = crate::emulator::start_emulator(&[
        "--site-file",
        EXAMPLE,
        "--listen-ip",
        &listen_ip,
        "--low-port-offset",
        "20000",
        "--port-map-out",
        port_map.to_str().expect("path"),
        // WSUS health lines at a human pace (as `make run` writes them): the page follows the
        // fault, not a flood of hourly checks made every 200 ms.
        "--health-interval-ms",
        "5000",
    ]);

    let admin = free_port().expect("port");
    let config = dir.path().join("provisioner.toml");
    std::fs::write(
        &config,
        format!(
            "admin_listen = \"127.0.0.1:{admin}\"\ninstall_timeout_secs = 60\n[agents]\n\"*\" = \"{}\"\n[nats]\nurl = \"{}\"\n",
            emu.agent,
            nats.url()
        ),
    )
    .expect("config");
    let _provisioner = service(
        "sup-provisioner",
        &config,
        admin,
        &[("SUP_INSTALL_PW", "install-account-password".into())],
    );
    let _logwatch = crate::procedure::start_logwatch(&nats, &emu);
    let (_scheduler, scheduler) = crate::scheduler::start_scheduler(nats.url());

    let (grpc, admin) = (free_port().expect("port"), free_port().expect("port"));
    let config = dir.path().join("health.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ninterval_ms = 300\ntimeout_ms = 1000\nca_file = \"{}\"\n[resolve]\n\"*\" = \"{listen_ip}\"\n[port_map]\n{}[nats]\nurl = \"{}\"\n",
            emu.ca.display(),
            std::fs::read_to_string(&port_map).expect("port map"),
            nats.url()
        ),
    )
    .expect("config");
    let _health = service("sup-health", &config, admin, &[]);

    let (web, admin) = (free_port().expect("port"), free_port().expect("port"));
    let token = dir.path().join("console-token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let config = dir.path().join("console.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{web}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ncoordinator = \"{}\"\nscheduler = \"{scheduler}\"\n[actions]\nenabled = true\ntoken_file = \"{}\"\n",
            coordinator.endpoint,
            token.display()
        ),
    )
    .expect("config");
    let mut console = service("sup-console", &config, admin, &[]);
    wait_ready(&mut console, admin);

    let out = supctl(
        &coordinator.endpoint,
        &["apply", "-f", EXAMPLE, "--wait", "--timeout", "120s"],
    );
    assert!(
        out.status.success(),
        "apply --wait:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&supctl(&coordinator.endpoint, &["status", "-o", "json"]).stdout)
            .expect("status json");
    let sites: Vec<(String, Vec<String>)> = status["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| {
            (
                s["code"].as_str().expect("code").to_string(),
                s["roles"]
                    .as_array()
                    .expect("roles")
                    .iter()
                    .map(|r| r["server"].as_str().expect("server").to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(sites.len(), 3, "{status}");

    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium()))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1400, 1100)))
            .idle_browser_timeout(Duration::from_secs(300))
            .build()
            .expect("launch options"),
    )
    .expect("Chromium starts");
    let tab = browser.new_tab().expect("tab");
    let base = format!("http://127.0.0.1:{web}");

    // The hierarchy: every site, children under their parent, each with its active SUP.
    tab.navigate_to(&base)
        .expect("open")
        .wait_until_navigated()
        .expect("loaded");
    wait_for(
        "every site on the hierarchy",
        Duration::from_secs(30),
        || {
            let t = main_text(&tab);
            let missing: Vec<&str> = sites
                .iter()
                .map(|(c, _)| c.as_str())
                .chain([
                    "cen-sup01.corp.example.com",
                    "ch1-sup.corp.example.com",
                    "ch2-sup01.corp.example.com",
                    "cen-inet01.corp.example.com",
                ])
                .filter(|c| !t.contains(c))
                .collect();
            (!missing.is_empty()).then(|| format!("missing {missing:?} in:\n{t}"))
        },
    );
    let order = eval_string(
        &tab,
        "Array.from(document.querySelectorAll('tr.site-row')).map(r => r.dataset.site + ':' + r.querySelector('td.tree').className).join(',')",
    );
    assert_eq!(order, "CEN:tree d0,CH1:tree d1,CH2:tree d1", "the tree");
    wait_for("the live indicator", Duration::from_secs(10), || {
        let s = eval_string(&tab, "document.getElementById('live').textContent");
        (s != "live").then_some(s)
    });
    screenshot(&tab, "hierarchy.png");

    // Each site's page lists every role of the site.
    for (code, servers) in &sites {
        tab.navigate_to(&format!("{base}/sites/{code}"))
            .expect("open")
            .wait_until_navigated()
            .expect("loaded");
        let t = main_text(&tab);
        for s in servers {
            assert!(t.contains(s.as_str()), "{code}: {s} missing in:\n{t}");
        }
        for component in [
            "SMS_WSUS_CONFIGURATION_MANAGER",
            "SMS_WSUS_SYNC_MANAGER",
            "SMS_WSUS_CONTROL_MANAGER",
        ] {
            assert!(
                t.contains(component),
                "{code}: {component} missing in:\n{t}"
            );
        }
    }

    // The central site's page stays open; a fault on its active SUP shows without a reload.
    tab.navigate_to(&format!("{base}/sites/CEN"))
        .expect("open")
        .wait_until_navigated()
        .expect("loaded");
    wait_for("the page to go live", Duration::from_secs(10), || {
        let s = eval_string(&tab, "document.getElementById('live').textContent");
        (s != "live").then_some(s)
    });
    let health_of = |server: &str| {
        eval_string(
            &tab,
            &format!(
                "(document.querySelector('tr.role[data-server=\"{server}\"]') || {{dataset: {{}}}}).dataset.health || ''"
            ),
        )
    };
    assert_eq!(health_of("cen-sup01.corp.example.com"), "healthy");
    tab.evaluate("window.__sameDocument = 'kept'", false)
        .expect("mark the document");
    let out = ctl(&emu, &["fault", "cen-sup01.corp.example.com", "down"]);
    assert!(out.status.success(), "ctl fault: {}", text(&out.stderr));
    wait_for(
        "the fault on the open page",
        Duration::from_secs(60),
        || {
            let h = health_of("cen-sup01.corp.example.com");
            (h != "unhealthy").then(|| format!("health {h:?}\n{}", main_text(&tab)))
        },
    );
    assert_eq!(
        eval_string(&tab, "window.__sameDocument"),
        "kept",
        "the page was reloaded"
    );
    // CEN fails over automatically: its page follows to the standby, still without a reload.
    wait_for(
        "the failover on the open page",
        Duration::from_secs(60),
        || {
            let active = eval_string(&tab, "document.getElementById('active-intranet').innerText");
            (!active.contains("cen-sup02.corp.example.com")).then_some(active)
        },
    );
    assert_eq!(eval_string(&tab, "window.__sameDocument"), "kept");
    let svg_rects = eval_string(
        &tab,
        "String(document.querySelectorAll('figure svg rect').length)",
    );
    assert!(
        svg_rects.parse::<usize>().unwrap_or(0) > 0,
        "the pictures are drawn"
    );
    screenshot(&tab, "site-CEN.png");

    // An operator signs in with the token and runs Run Synchronization on the central site.
    tab.navigate_to(&format!("{base}/login"))
        .expect("open")
        .wait_until_navigated()
        .expect("loaded");
    // The page's own form and button, through the DOM in one step each (a click through the
    // protocol waits on events a busy machine may deliver late, and a live refresh may swap the
    // element under it).
    tab.wait_for_element("input[name=token]")
        .expect("token field");
    tab.evaluate(
        &format!(
            "document.querySelector('input[name=token]').value = '{TOKEN}'; \
             document.querySelector('form.login button').click();"
        ),
        false,
    )
    .expect("sign in");
    wait_for("the signed-in session", Duration::from_secs(30), || {
        let at = eval_string(&tab, "location.pathname");
        (at != "/").then_some(at)
    });
    tab.navigate_to(&format!("{base}/sites/CEN"))
        .expect("open")
        .wait_until_navigated()
        .expect("loaded");
    wait_for(
        "the Run Synchronization button",
        Duration::from_secs(30),
        || {
            let clicked = eval_string(
                &tab,
                "(function () { var b = document.querySelector(\"form[action='/sites/CEN/sync'] button\"); \
             if (!b) return 'no button'; b.click(); return 'clicked'; })()",
            );
            (clicked != "clicked").then_some(clicked)
        },
    );
    wait_for(
        "Run Synchronization's answer",
        Duration::from_secs(30),
        || {
            let t = main_text(&tab);
            (!t.contains("Run Synchronization: run")).then_some(t)
        },
    );
    // The run shows in the synchronization history picture.
    wait_for("the run in the history", Duration::from_secs(60), || {
        let n = eval_string(&tab, "String(document.querySelectorAll('rect.run').length)");
        (n.parse::<usize>().unwrap_or(0) == 0).then_some(n)
    });
    drop(console);
}
