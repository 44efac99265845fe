//! The deployment files say what the services accept: every Kubernetes manifest parses, every
//! config key in a ConfigMap or a `SUP_<SERVICE>__…` variable (in the manifests and in
//! docker-compose.yml) exists in that service's configuration schema, and every Deployment has
//! readiness and liveness probes.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built-in defaults of a service: its configuration schema.
fn schema(service: &str) -> toml::Table {
    let defaults = match service {
        "coordinator" => sup_coordinator::DEFAULTS,
        "provisioner" => sup_provisioner::DEFAULTS,
        "scheduler" => sup_scheduler::DEFAULTS,
        "health" => sup_health::DEFAULTS,
        "logwatch" => sup_logwatch::DEFAULTS,
        other => panic!("no service named {other}"),
    };
    toml::from_str(defaults).expect("defaults parse")
}

/// Every key of `config` exists in `schema`; tables that are empty in the schema are maps with
/// keys of the user's choosing (agents, resolve, tz_bias).
fn unknown_keys(config: &toml::Table, schema: &toml::Table, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in config {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match schema.get(k) {
            None => out.push(path),
            Some(toml::Value::Table(s)) if !s.is_empty() => match v {
                toml::Value::Table(c) => out.extend(unknown_keys(c, s, &path)),
                _ => out.push(format!("{path} (a table in the schema)")),
            },
            Some(_) => {}
        }
    }
    out
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

fn env_key_exists(service: &str, path: &[String]) -> bool {
    let mut table = schema(service);
    for (i, part) in path.iter().enumerate() {
        match table.get(part) {
            Some(toml::Value::Table(t)) if i + 1 < path.len() => {
                if t.is_empty() {
                    return true;
                }
                table = t.clone();
            }
            Some(_) => return i + 1 == path.len(),
            None => return false,
        }
    }
    false
}

fn documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|d: &serde_yaml_ng::Value| !d.is_null())
        .collect()
}

#[test]
fn kubernetes_manifests_parse_and_name_only_existing_config_keys() {
    let dir = root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut problems = Vec::new();
    let (mut configmaps, mut deployments) = (0, 0);
    for file in &files {
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                doc["apiVersion"].as_str().is_some() && !kind.is_empty() && !name.is_empty(),
                "{}: a document without apiVersion, kind or metadata.name",
                file.display()
            );
            if kind == "ConfigMap"
                && let Some(service) = name.strip_prefix("sup-")
                && let Some(text) = doc["data"]["config.toml"].as_str()
            {
                configmaps += 1;
                let config: toml::Table = toml::from_str(text)
                    .unwrap_or_else(|e| panic!("ConfigMap {name}: config.toml: {e}"));
                for k in unknown_keys(&config, &schema(service), "") {
                    problems.push(format!("ConfigMap {name}: unknown key {k}"));
                }
            }
            if kind == "Deployment" {
                deployments += 1;
                for c in doc["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .expect("containers")
                {
                    for probe in ["readinessProbe", "livenessProbe"] {
                        if c[probe].is_null() {
                            problems.push(format!("Deployment {name}: no {probe}"));
                        }
                    }
                    for e in c["env"].as_sequence().into_iter().flatten() {
                        let var = e["name"].as_str().unwrap_or_default();
                        if let Some((service, path)) = env_key(var)
                            && !env_key_exists(&service, &path)
                        {
                            problems.push(format!("Deployment {name}: {var} names no config key"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        configmaps >= 5 && deployments >= 5,
        "{configmaps} {deployments}"
    );
    assert!(problems.is_empty(), "{problems:#?}");
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
        for (var, _) in env {
            let var = var.as_str().unwrap_or_default();
            if let Some((svc, path)) = env_key(var) {
                checked += 1;
                if !env_key_exists(&svc, &path) {
                    problems.push(format!("{name:?}: {var} names no config key"));
                }
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
