//! Test support: starts real `nats-server` processes with JetStream on free loopback ports, each
//! with its own temporary store, and stops them on drop. A single node or a 3-node cluster.
//!
//! The binary is `$NATS_SERVER_BIN`, else the project's `.tools/bin/nats-server` (installed by
//! `make tools`), else `nats-server` on `PATH`.
//!
//! [`jetstream::Inspector`] looks inside the streams of a running server for trials and tests.
//! [`Process`] runs a workspace binary (log, readiness, signals, restart) and [`Service`] starts a
//! stack's service with its settings and free ports: every stack the tests, the chaos trials and
//! the benchmarks assemble is built from them.

pub mod jetstream;
mod process;
mod service;

pub use process::{Process, sibling_binary};
pub use service::Service;

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The arguments of a JetStream node on `port`, its store in `dir`, configured by `conf`.
fn config_args(port: u16, dir: &Path, conf: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["-js", "-a", "127.0.0.1", "-p", &port.to_string()]
        .iter()
        .map(Into::into)
        .collect();
    args.extend([
        "-sd".into(),
        dir.join("store").into(),
        "-c".into(),
        conf.into(),
    ]);
    args
}

/// A running nats-server; killed and its store removed when dropped.
pub struct NatsServer {
    child: Child,
    url: String,
    port: u16,
    _dir: tempfile::TempDir,
    /// How it was started, so that it can be started again on the same store.
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
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

/// A free loopback TCP port for a child process to bind.
///
/// Ports are drawn at random from 20000-32767 (below Linux's ephemeral range, so client sockets
/// never hold them) and checked by binding. Asking the OS for port 0 instead tends to hand the
/// same just-released port to tests running in parallel processes.
pub fn free_port() -> io::Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    for _ in 0..200 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12768) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
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
        let mut args: Vec<std::ffi::OsString> = ["-js", "-a", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(Into::into)
            .collect();
        args.push("-sd".into());
        args.push(dir.path().join("store").into());
        args.extend(extra.iter().map(Into::into));
        Self::launch(dir, port, args, Vec::new(), "nats")
    }

    fn spawn_child(
        dir: &Path,
        args: &[std::ffi::OsString],
        env: &[(String, String)],
    ) -> io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))?;
        Command::new(nats_server_bin()?)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
    }

    fn launch(
        dir: tempfile::TempDir,
        port: u16,
        args: Vec<std::ffi::OsString>,
        env: Vec<(String, String)>,
        scheme: &str,
    ) -> io::Result<Self> {
        let child = Self::spawn_child(dir.path(), &args, &env)?;
        let mut server = Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            _dir: dir,
            args,
            env,
        };
        server.wait_ready(Duration::from_secs(15))?;
        Ok(server)
    }

    /// A node on `port` configured by `config` (no extra files, no TLS).
    pub fn start_with_config_on(port: u16, config: &str) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, config)?;
        let args = config_args(port, dir.path(), &conf);
        Self::launch(dir, port, args, Vec::new(), "nats")
    }

    /// SIGKILL: the node stops at once, its store stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on the same port and store (after [`NatsServer::kill`]).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.child = Self::spawn_child(self._dir.path(), &self.args, &self.env)?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// A JetStream node on a free port configured by `server.conf` (written with the other
    /// `files` into the node's own folder, so an `include` of one of them resolves), with `env`
    /// for the config's `$VARIABLES`. The URL is `tls://` when `tls` is set.
    pub fn start_with_config(
        config: &str,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
        tls: bool,
    ) -> io::Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)?;
        }
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, config)?;
        let args = config_args(port, dir.path(), &conf);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(dir, port, args, env, if tls { "tls" } else { "nats" })
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

    /// Three nodes for failure trials: every write on disk before it is acknowledged
    /// (`sync_interval: always`), named `n0`..`n2` (the names JetStream reports as leaders), each
    /// restartable on its own store.
    pub fn start_durable() -> io::Result<Self> {
        let client_ports = [free_port()?, free_port()?, free_port()?];
        let cluster_ports = [free_port()?, free_port()?, free_port()?];
        let routes = cluster_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let config = format!(
                "server_name: n{i}\nping_interval: \"2s\"\nping_max: 2\njetstream {{\n  sync_interval: always\n}}\ncluster {{\n  name: sup\n  listen: \"127.0.0.1:{}\"\n  routes: [{routes}]\n}}\n",
                cluster_ports[i]
            );
            nodes.push(NatsServer::start_with_config_on(client_ports[i], &config)?);
        }
        Ok(Self { nodes })
    }

    /// The index of the node named `name` (`n0`..`n2`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')?
            .parse()
            .ok()
            .filter(|i| *i < self.nodes.len())
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

/// The path of one of the workspace's binaries, built on first use (`cargo build --workspace
/// --all-targets`, the same feature set as `cargo nextest run --workspace`, so it is a
/// no-op after it), so end-to-end tests always drive the current code.
pub fn binary(name: &str) -> io::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The variables cargo and nextest set for a test process would make build scripts (ring's,
        // for one) see a changed environment and rebuild; build as a plain shell would.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let keep = matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
            if !keep
                && (k.starts_with("CARGO_")
                    || k.starts_with("NEXTEST")
                    || k.starts_with("RUST_")
                    || k == "OUT_DIR")
            {
                cmd.env_remove(&k);
            }
        }
        let out = cmd
            .current_dir(&root)
            .args(["build", "--workspace", "--all-targets", "--quiet"])
            .output()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cargo build --bins failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    built.clone().map_err(io::Error::other)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} was not built", path.display()),
        ))
    }
}
