//! The deployment files say what the services accept: both Kustomize overlays render (kubectl),
//! every configuration in them loads into its service's settings as the service loads it, every
//! workload is probed and locked down, and every `SUP_<SERVICE>__…` variable of
//! docker-compose.yml names an existing key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `SUP_COORDINATOR__NATS__URL` → ("coordinator", ["nats", "url"]).
fn env_key(name: &str) -> Option<(String, Vec<String>)> {
    let rest = name.strip_prefix("SUP_")?;
    let (service, key) = rest.split_once("__")?;
    Some((
        service.to_ascii_lowercase(),
        key.split("__").map(|p| p.to_ascii_lowercase()).collect(),
    ))
}

/// Loads a service's configuration as the service does (its defaults, then `file`, then the
/// `SUP_<SERVICE>__…` variables of `env`), into its own settings type, which refuses unknown keys.
fn load(service: &str, file: Option<&Path>, env: &[(String, String)]) -> Result<(), String> {
    // SAFETY: nextest runs each test in a process of its own; only this test touches these.
    unsafe {
        for (k, v) in env {
            std::env::set_var(k, v);
        }
    }
    fn settings<T: sup_runtime::OwnSettings>(
        service: &str,
        defaults: &str,
        file: Option<&Path>,
    ) -> Result<T, String> {
        sup_runtime::load_config::<sup_runtime::ServiceSettings<T>>(service, defaults, file)
            .map(|s| s.own)
            .map_err(|e| e.to_string())
    }
    let result = match service {
        "coordinator" => {
            settings::<sup_coordinator::Settings>(service, sup_coordinator::DEFAULTS, file)
                .map(drop)
        }
        "provisioner" => {
            settings::<sup_provisioner::Settings>(service, sup_provisioner::DEFAULTS, file)
                .and_then(|s| {
                    for (code, p) in &s.providers {
                        p.auth().map_err(|e| format!("providers.{code}.{e}"))?;
                    }
                    Ok(())
                })
        }
        "scheduler" => {
            settings::<sup_scheduler::Settings>(service, sup_scheduler::DEFAULTS, file).map(drop)
        }
        "health" => settings::<sup_health::Settings>(service, sup_health::DEFAULTS, file).map(drop),
        "logwatch" => {
            settings::<sup_logwatch::Settings>(service, sup_logwatch::DEFAULTS, file).map(drop)
        }
        "console" => {
            settings::<sup_console::Settings>(service, sup_console::DEFAULTS, file).map(drop)
        }
        other => panic!("no service named {other}"),
    };
    unsafe {
        for (k, _) in env {
            std::env::remove_var(k);
        }
    }
    result
}

fn parse_documents(text: &str, what: &str) -> Vec<serde_yaml_ng::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{what} does not parse: {e}"))
        })
        .filter(|d: &serde_yaml_ng::Value| !d.is_null())
        .collect()
}

/// An overlay as `kubectl kustomize` renders it.
fn render(overlay: &str) -> Vec<serde_yaml_ng::Value> {
    let dir = root().join("deploy/k8s/overlays").join(overlay);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl kustomize (run `make tools`): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_documents(&String::from_utf8_lossy(&out.stdout), overlay)
}

/// What a rendered overlay's workloads must be: every config key one the service has, every
/// container probed, limited and locked down, every replicated workload under a disruption
/// budget, every ConfigMap, Secret-less volume and claim it names defined.
fn check_overlay(overlay: &str) -> Vec<String> {
    let docs = render(overlay);
    let mut problems = Vec::new();
    let named = |kind: &str| -> std::collections::BTreeSet<String> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (configmaps, claims) = (named("ConfigMap"), named("PersistentVolumeClaim"));
    let budgets: Vec<&serde_yaml_ng::Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("PodDisruptionBudget"))
        .collect();
    let (mut configs, mut workloads) = (0, 0);
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let at = format!("{overlay}: {kind} {name}");
        if doc["apiVersion"].as_str().is_none() || kind.is_empty() || name.is_empty() {
            problems.push(format!("{at}: no apiVersion, kind or name"));
        }
        if kind == "ConfigMap"
            && let Some(service) = name.strip_prefix("sup-")
            && let Some(text) = doc["data"]["config.toml"].as_str()
        {
            configs += 1;
            let dir = tempfile::tempdir().expect("temp dir");
            let file = dir.path().join("config.toml");
            std::fs::write(&file, text).expect("write config");
            if let Err(e) = load(service, Some(&file), &[]) {
                problems.push(format!("{at}: {e}"));
            }
        }
        if !matches!(kind, "Deployment" | "StatefulSet") {
            continue;
        }
        workloads += 1;
        let pod = &doc["spec"]["template"]["spec"];
        let labels = &doc["spec"]["template"]["metadata"]["labels"];
        if pod["securityContext"]["runAsNonRoot"].as_bool() != Some(true)
            || pod["securityContext"]["seccompProfile"]["type"].as_str() != Some("RuntimeDefault")
        {
            problems.push(format!("{at}: the pod may run as root or without seccomp"));
        }
        if pod["automountServiceAccountToken"].as_bool() != Some(false) {
            problems.push(format!("{at}: a service account token is mounted"));
        }
        let replicas = doc["spec"]["replicas"].as_u64().unwrap_or(1);
        let budgeted = budgets.iter().any(|b| {
            b["spec"]["selector"]["matchLabels"]
                .as_mapping()
                .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v))
        });
        if replicas > 1 && !budgeted {
            problems.push(format!(
                "{at}: {replicas} replicas and no PodDisruptionBudget"
            ));
        }
        for c in pod["containers"].as_sequence().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap_or_default();
            let at = format!("{at} container {cname}");
            for probe in ["readinessProbe", "livenessProbe"] {
                if c[probe].is_null() {
                    problems.push(format!("{at}: no {probe}"));
                }
            }
            let sc = &c["securityContext"];
            if sc["allowPrivilegeEscalation"].as_bool() != Some(false)
                || sc["readOnlyRootFilesystem"].as_bool() != Some(true)
                || sc["capabilities"]["drop"][0].as_str() != Some("ALL")
            {
                problems.push(format!(
                    "{at}: not locked down (privilege escalation, writable root or capabilities)"
                ));
            }
            if c["resources"]["limits"]["memory"].is_null()
                || c["resources"]["requests"]["cpu"].is_null()
            {
                problems.push(format!("{at}: no memory limit or CPU request"));
            }
            let mut service_env: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for e in c["env"].as_sequence().into_iter().flatten() {
                let var = e["name"].as_str().unwrap_or_default();
                if let Some((service, _)) = env_key(var) {
                    let value = e["value"].as_str().unwrap_or("from-a-secret").to_string();
                    service_env
                        .entry(service)
                        .or_default()
                        .push((var.to_string(), value));
                }
            }
            for (service, vars) in service_env {
                if let Err(e) = load(&service, None, &vars) {
                    problems.push(format!("{at}: {e}"));
                }
            }
        }
        for v in pod["volumes"].as_sequence().into_iter().flatten() {
            if let Some(cm) = v["configMap"]["name"].as_str()
                && !configmaps.contains(cm)
            {
                problems.push(format!("{at}: ConfigMap {cm} is not defined"));
            }
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str()
                && !claims.contains(claim)
            {
                problems.push(format!(
                    "{at}: PersistentVolumeClaim {claim} is not defined"
                ));
            }
        }
    }
    if !budgets
        .iter()
        .any(|b| b["metadata"]["name"].as_str() == Some("nats"))
    {
        problems.push(format!("{overlay}: no PodDisruptionBudget for NATS"));
    }
    if configs < 6 || workloads < 6 {
        problems.push(format!(
            "{overlay}: only {configs} configurations and {workloads} workloads"
        ));
    }
    problems
}

#[test]
fn both_kubernetes_overlays_render_hardened_with_only_existing_config_keys() {
    let mut problems = check_overlay("lab");
    problems.extend(check_overlay("production"));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Kustomize reads only files under its directories: the NATS permissions and the lab's site
/// file are copies, which must not drift from the originals.
#[test]
fn the_kustomize_copies_are_the_originals() {
    for (copy, original) in [
        (
            "deploy/k8s/base/nats/permissions.conf",
            "deploy/nats/permissions.conf",
        ),
        (
            "deploy/k8s/overlays/lab/site.toml",
            "deploy/examples/site.toml",
        ),
    ] {
        let read = |p: &str| std::fs::read(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(
            read(copy) == read(original),
            "{copy} differs from {original}: copy it again"
        );
    }
}

#[test]
fn compose_environment_names_only_existing_config_keys() {
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file"),
    )
    .expect("docker-compose.yml parses");
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        let mut by_service: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (var, value) in env {
            let var = var.as_str().unwrap_or_default();
            if let Some((svc, _)) = env_key(var) {
                checked += 1;
                // ${VAR:-default} is the default when nothing is set.
                let value = match value {
                    serde_yaml_ng::Value::String(v) => v
                        .split_once(":-")
                        .map(|(_, d)| d.trim_end_matches('}').to_string())
                        .unwrap_or_else(|| v.clone()),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                by_service
                    .entry(svc)
                    .or_default()
                    .push((var.to_string(), value));
            }
        }
        for (svc, vars) in by_service {
            if let Err(e) = load(&svc, None, &vars) {
                problems.push(format!("{name:?}: {e}"));
            }
        }
    }
    assert!(checked >= 20, "only {checked} settings found");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every example site file follows every rule (as `supctl apply` checks them) and is one the
/// emulator can stand in for under `make run`.
#[test]
fn the_example_site_files_are_valid() {
    let dir = root().join("deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        if let Err(v) = sup_core::spec::load_site_file(&text, &Default::default()) {
            panic!("{}:\n{v}", path.display());
        }
        let setup = wsus_emulator::site_file_setup(&text)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(!setup.servers.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "the example files: {seen}");
}

/// `supctl validate` needs no service: the example is valid with nothing listening at the
/// coordinator's address, and a broken file exits 2 with each rule as apply prints it.
#[test]
fn supctl_validates_a_site_file_with_no_service_running() {
    use crate::support::{site_file, supctl, text};
    // A port nothing listens on.
    let nobody = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let example = root().join("deploy/examples/site.toml");
    let out = supctl(&nobody, &["validate", "-f", &example.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for code in ["CEN", "CH1", "CH2"] {
        assert!(said.contains(&format!("site {code}: valid")), "{said}");
    }

    let broken =
        site_file("[[site]]\ncode = \"toolong\"\nparent = \"CEN\"\nfailover = \"sometimes\"\n");
    let out = supctl(
        &nobody,
        &["validate", "-f", &broken.path().to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("site[0].code") && said.contains("[site_code]"),
        "{said}"
    );
    assert!(said.contains("site[0].failover"), "{said}");
}
