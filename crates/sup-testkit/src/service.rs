//! A service of the stack, as tests, trials and benchmarks start it: `sup-<name>` with its
//! settings as `SUP_<NAME>__<KEY>` variables (and, for what variables cannot say, a TOML file), a
//! free loopback port for each listener, and its bus. Every stack here is assembled from these.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Process, free_port};

/// How long a service may take to become ready: a debug build on a busy two-core machine.
const READY_PATIENCE: Duration = Duration::from_secs(60);

/// A service to start.
#[derive(Debug, Clone)]
pub struct Service {
    binary: String,
    prefix: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    listen: Option<u16>,
    admin: u16,
    build: Option<(PathBuf, PathBuf)>,
}

impl Service {
    /// `sup-<name>` (`coordinator`, `logwatch`, …) with a free admin port.
    pub fn new(name: &str) -> io::Result<Self> {
        let admin = free_port()?;
        let service = Self {
            binary: format!("sup-{name}"),
            prefix: format!("SUP_{}", name.to_ascii_uppercase().replace('-', "_")),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            listen: None,
            admin,
            build: None,
        };
        Ok(service.set("ADMIN_LISTEN", format!("127.0.0.1:{admin}")))
    }

    /// It serves an API too (gRPC, or the console's pages): a free port for `listen`.
    pub fn listening(mut self) -> io::Result<Self> {
        let port = free_port()?;
        self.listen = Some(port);
        Ok(self.set("LISTEN", format!("127.0.0.1:{port}")))
    }

    /// Its bus: the server list (comma-separated for a cluster) and the stream replicas.
    pub fn nats(self, urls: &str, replicas: usize) -> Self {
        self.set("NATS__URL", urls).set("NATS__REPLICAS", replicas)
    }

    /// One setting, its key as in the service's file with `__` between table levels
    /// (`NATS__CLIENT_NAME`).
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.env
            .push((format!("{}__{key}", self.prefix), value.to_string()));
        self
    }

    /// Settings as TOML, for what variables cannot say (a table keyed `"*"`); the variables
    /// still override it.
    pub fn config(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// A command-line argument (`run` for the log watcher).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable of the process itself (a password it reads, `RUST_LOG`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the binary from `bins` (a profile's target directory) instead of the workspace's
    /// build, its output appended to `<binary>-<admin port>.log` in `log_dir` (so two replicas
    /// keep separate logs).
    pub fn from_build(mut self, bins: &Path, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{}-{}.log", self.binary, self.admin));
        self.build = Some((bins.join(&self.binary), log));
        self
    }

    /// The `listen` port, when it has one.
    pub fn listen_port(&self) -> Option<u16> {
        self.listen
    }

    pub fn admin_port(&self) -> u16 {
        self.admin
    }

    /// Starts it and waits until it is ready (`/readyz`).
    pub fn start(self) -> io::Result<Process> {
        let mut process = self.spawn()?;
        process.wait_ready(READY_PATIENCE)?;
        Ok(process)
    }

    /// Starts it without waiting; the caller awaits [`Process::ready`].
    pub fn spawn(mut self) -> io::Result<Process> {
        let config = match self.config.take() {
            None => None,
            Some(text) => {
                let mut file = tempfile::Builder::new()
                    .prefix(&format!("{}-", self.binary))
                    .suffix(".toml")
                    .tempfile()?;
                io::Write::write_all(&mut file, text.as_bytes())?;
                Some(file.into_temp_path())
            }
        };
        let mut args = self.args.clone();
        if let Some(path) = &config {
            args.extend(["--config".to_string(), path.display().to_string()]);
        }
        let mut process = match self.build {
            Some((program, log)) => {
                if !program.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{} not built: build the workspace's binaries first",
                            program.display()
                        ),
                    ));
                }
                Process::spawn(program, args, self.env, log)?
            }
            None => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let env: Vec<(&str, String)> = self
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                Process::start(&self.binary, &args, &env)?
            }
        };
        process.admin_port = Some(self.admin);
        process.listen_port = self.listen;
        process.config = config;
        Ok(process)
    }
}
