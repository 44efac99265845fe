//! The system under trial: a durable three-node NATS cluster, two coordinator replicas, the
//! provisioner, the log watcher, the health service and the WSUS emulator, every process
//! restartable with the arguments it was started with.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sup_proto::v1::{self, coordinator_client::CoordinatorClient};
use sup_testkit::{NatsCluster, Process, Service, free_port};
use tonic::transport::Channel;

/// Starts the WSUS emulator from `bins`, its log in `dir`, `RUST_LOG` as `rust_log`.
fn start_emulator(
    bins: &Path,
    args: Vec<String>,
    dir: &Path,
    rust_log: &str,
) -> anyhow::Result<Process> {
    let program = bins.join("wsus-emulator");
    anyhow::ensure!(
        program.exists(),
        "{} not built: build the workspace's binaries first",
        program.display()
    );
    let env = vec![
        (
            "WSUS_EMULATOR_PROVIDER_PASSWORD".to_string(),
            PROVIDER_PASSWORD.to_string(),
        ),
        ("RUST_LOG".to_string(), rust_log.to_string()),
    ];
    Process::spawn(program, args, env, dir.join("wsus-emulator.log"))
        .context("starting wsus-emulator")
}

/// Starts a killed process again and waits until it is ready.
pub async fn restart(p: &mut Process) -> anyhow::Result<()> {
    p.restart()?;
    Ok(p.ready(Duration::from_secs(60)).await?)
}

/// The sites under trial: CHX (three SUPs, moved by activation storms, reached through its SMS
/// Provider) and FOV (two SUPs in an `auto` site, moved by failover when the active one goes
/// down, reached through the site-system agent).
pub const CHX: [&str; 3] = [
    "x1.chaos.example.com",
    "x2.chaos.example.com",
    "x3.chaos.example.com",
];
pub const FOV: [&str; 2] = ["f1.chaos.example.com", "f2.chaos.example.com"];

/// The emulated SMS Provider's lab password in the trials.
const PROVIDER_PASSWORD: &str = "chaos-lab-provider-password";

fn site_file(http: u16, https: u16) -> String {
    let mut s = String::new();
    for (code, servers, extra) in [
        (
            "CHX",
            &CHX[..],
            "site_server = \"chx-site.chaos.example.com\"\n",
        ),
        ("FOV", &FOV[..], "failover = \"auto\"\n"),
    ] {
        s.push_str(&format!("[[site]]\ncode = \"{code}\"\n{extra}"));
        for server in servers {
            s.push_str(&format!("[[site.site_system]]\nserver = \"{server}\"\n"));
        }
        for (i, server) in servers.iter().enumerate() {
            s.push_str(&format!(
                "[[site.software_update_point]]\nserver = \"{server}\"\nhttp_port = {http}\nhttps_port = {https}\n{}",
                if i == 0 { "active = \"intranet\"\n" } else { "" }
            ));
        }
    }
    s
}

/// Shared by the trial driver's tasks; what a trial kills sits behind a lock.
pub struct Stack {
    pub cluster: std::sync::Mutex<NatsCluster>,
    pub coordinators: Vec<tokio::sync::Mutex<Process>>,
    pub endpoints: Vec<String>,
    pub provisioner: Process,
    pub logwatch: tokio::sync::Mutex<Process>,
    pub health: Process,
    pub emulator: tokio::sync::Mutex<Process>,
    /// The emulator's control API, `host:port`.
    pub control: String,
    pub bus: sup_bus::Bus,
    /// JetStream seen from outside the bus: stream leaders and raw stored messages.
    pub inspector: sup_testkit::jetstream::Inspector,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything, applies the two sites and waits until each has its active SUP.
    pub async fn start(bins: &Path) -> anyhow::Result<Self> {
        let mut dir = tempfile::Builder::new().prefix("sup-chaos-").tempdir()?;
        // SUP_CHAOS_KEEP keeps every process's log (and the stores) for a post-mortem.
        if std::env::var_os("SUP_CHAOS_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("[chaos] logs and stores kept in {}", dir.path().display());
        }
        let d = dir.path().to_path_buf();
        let cluster = NatsCluster::start_durable().context("starting the NATS cluster")?;
        let urls = cluster.urls();
        let port = free_port;
        let (http, https, agent, control) = (port()?, port()?, port()?, port()?);
        let provider = port()?;
        let ca = d.join("ca.pem");
        let logs = d.join("logs");
        let s = |p: &Path| p.display().to_string();
        // The emulator has no admin listener; its control API answering is its readiness.
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let emulator = start_emulator(
            bins,
            [
                "run",
                "--http",
                &format!("127.0.0.1:{http}"),
                "--https",
                &format!("127.0.0.1:{https}"),
                "--default-ports",
                &format!("{http},{https}"),
                "--agent",
                &format!("127.0.0.1:{agent}"),
                "--control",
                &format!("127.0.0.1:{control}"),
                "--ca-out",
                &s(&ca),
                "--logs",
                &s(&logs),
                "--site-server",
                "CHX=chx-site.chaos.example.com",
                "--provider-http",
                &format!("127.0.0.1:{provider}"),
                "--step-ms",
                "5",
                "--health-interval-ms",
                "100",
                // Rotation every few seconds, so log watchers are killed across rotations.
                "--max-log-size",
                "8192",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            &d,
            &rust_log,
        )?;
        wait_port(control, Duration::from_secs(30)).await?;
        // Every service of the trial: its binary from `bins`, its log in the trial's folder,
        // the durable cluster as its bus.
        let service = |name: &str, client: &str| -> anyhow::Result<Service> {
            Ok(Service::new(name)?
                .from_build(bins, &d)
                .nats(&urls, 3)
                .set("NATS__CLIENT_NAME", client)
                .env("RUST_LOG", rust_log.clone()))
        };
        let mut coordinators = Vec::new();
        let mut endpoints = Vec::new();
        for i in 0..2 {
            let p = service("coordinator", &format!("sup-coordinator-{i}"))?
                .listening()?
                .set("RECONCILE_INTERVAL_SECS", 1)
                .set("FAILOVER_AFTER_SECS", 1)
                .spawn()
                .context("starting sup-coordinator")?;
            endpoints.push(p.endpoint()?);
            coordinators.push(p);
        }
        let provisioner = service("provisioner", "sup-provisioner")?
            .set("AGENT_ENDPOINT", format!("http://127.0.0.1:{agent}"))
            .set("RETRY_BASE_MS", 100)
            .set(
                "PROVIDERS__CHX__URL",
                "http://chx-site.chaos.example.com:5985/wsman",
            )
            .set("PROVIDERS__CHX__USER", "LAB\\sup-provider")
            .set("PROVIDERS__CHX__PASSWORD_ENV", "SMS_PROVIDER_PASSWORD")
            .set(
                "PROVIDERS__CHX__CONNECT_TO",
                format!("127.0.0.1:{provider}"),
            )
            .env("SMS_PROVIDER_PASSWORD", PROVIDER_PASSWORD)
            .spawn()
            .context("starting sup-provisioner")?;
        let logwatch = service("logwatch", "sup-logwatch")?
            .arg("run")
            .set("ROOT", s(&logs))
            .set("POLL_INTERVAL_MS", 100)
            .set("DISCOVER_INTERVAL_SECS", 1)
            .spawn()
            .context("starting sup-logwatch")?;
        let health = service("health", "sup-health")?
            .listening()?
            .config(format!(
                "interval_ms = 300\ntimeout_ms = 500\nmilestone_max_age_secs = 0\nca_file = \"{}\"\n[resolve]\n\"*\" = \"127.0.0.1\"\n",
                ca.display()
            ))
            .spawn()
            .context("starting sup-health")?;
        for p in coordinators
            .iter()
            .chain([&provisioner, &logwatch, &health])
        {
            p.ready(Duration::from_secs(120)).await?;
        }
        let mut config = sup_bus::BusConfig::new(urls.clone());
        config.replicas = 3;
        config.client_name = "sup-chaos".into();
        let bus = sup_bus::Bus::connect(&config).await?;
        let inspector = sup_testkit::jetstream::Inspector::connect(&urls)
            .await
            .map_err(|e| anyhow::anyhow!("inspecting the cluster's streams: {e}"))?;
        let stack = Self {
            inspector,
            cluster: std::sync::Mutex::new(cluster),
            coordinators: coordinators
                .into_iter()
                .map(tokio::sync::Mutex::new)
                .collect(),
            endpoints,
            provisioner,
            logwatch: tokio::sync::Mutex::new(logwatch),
            health,
            emulator: tokio::sync::Mutex::new(emulator),
            control: format!("127.0.0.1:{control}"),
            bus,
            dir,
        };
        let file = d.join("sites.toml");
        std::fs::write(&file, site_file(http, https))?;
        let out = Command::new(bins.join("supctl"))
            .env("SUP_COORDINATOR", &stack.endpoints[0])
            .env_remove("RUST_BACKTRACE")
            .args(["apply", "-f", &s(&file), "--wait", "--timeout", "180s"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "applying the trial sites failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stack)
    }

    pub async fn client(&self, i: usize) -> Option<CoordinatorClient<Channel>> {
        let endpoint = Channel::from_shared(self.endpoints[i % self.endpoints.len()].clone())
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5));
        endpoint.connect().await.ok().map(CoordinatorClient::new)
    }

    /// One site's status from any replica that answers.
    pub async fn site(&self, code: &str) -> Option<v1::SiteStatus> {
        for i in 0..self.endpoints.len() {
            if let Some(mut c) = self.client(i).await
                && let Ok(r) = c
                    .get_status(v1::GetStatusRequest { site: code.into() })
                    .await
            {
                return r.into_inner().sites.into_iter().next();
            }
        }
        None
    }

    /// An emulator control call.
    pub async fn control(&self, method: reqwest::Method, path: &str) -> anyhow::Result<String> {
        let r = reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.control))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
        Ok(r.text().await?)
    }
}

async fn wait_port(port: u16, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
