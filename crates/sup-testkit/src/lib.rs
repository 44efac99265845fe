//! Test support: starts real `nats-server` processes with JetStream on free loopback ports, each
//! with its own temporary store, and stops them on drop. A single node or a 3-node cluster.
//!
//! The binary is `$NATS_SERVER_BIN`, else the project's `.tools/bin/nats-server` (installed by
//! `make tools`), else `nats-server` on `PATH`.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server; killed and its store removed when dropped.
pub struct NatsServer {
    child: Child,
    url: String,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Where the nats-server binary is, or an error that says how to install it.
pub fn nats_server_bin() -> io::Result<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = root.join(".tools/bin/nats-server");
    if local.exists() {
        return Ok(local);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists());
    on_path.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "nats-server not found: run `make tools` (installs nats-server 2.15 into .tools/) or set NATS_SERVER_BIN",
        )
    })
}

/// A free loopback TCP port (the OS picks it; a race with another process is possible but rare).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    /// A single JetStream node on a free port.
    pub fn start() -> io::Result<Self> {
        let port = free_port()?;
        Self::start_on(port, &[])
    }

    /// A node on `port` with extra command-line arguments.
    pub fn start_on(port: u16, extra: &[String]) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("store");
        let mut cmd = Command::new(nats_server_bin()?);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                dir.path().join("server.log"),
            )?));
        let child = cmd.spawn()?;
        let mut server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            _dir: dir,
        };
        server.wait_ready(Duration::from_secs(15))?;
        Ok(server)
    }

    fn wait_ready(&mut self, patience: Duration) -> io::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self._dir.path().join("server.log"))
                    .unwrap_or_default();
                return Err(io::Error::other(format!(
                    "nats-server exited ({status}):\n{log}"
                )));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nats-server did not start listening",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own log, for test failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nats-server nodes clustered on loopback with JetStream (`sync_interval: always` is left to
/// the chaos configuration; this is the plain cluster).
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> io::Result<Self> {
        let client_ports = [free_port()?, free_port()?, free_port()?];
        let cluster_ports = [free_port()?, free_port()?, free_port()?];
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let extra = vec![
                "--name".to_string(),
                format!("n{i}"),
                "--cluster_name".to_string(),
                "sup".to_string(),
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{}", cluster_ports[i]),
                "--routes".to_string(),
                routes.clone(),
            ];
            nodes.push(NatsServer::start_on(client_ports[i], &extra)?);
        }
        Ok(Self { nodes })
    }

    /// A comma-separated server list for clients.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
