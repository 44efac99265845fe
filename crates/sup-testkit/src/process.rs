//! A workspace binary run as a child process, the one way tests, trials and benchmarks start
//! the services: output appended to a log file that survives restarts, readiness by port or by
//! `/readyz`, signals, kill and restart with the same arguments, and a kill on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The readiness request every service answers on its admin port.
const READYZ: &[u8] = b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n";

fn is_ok(answer: &[u8]) -> bool {
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// A workspace binary running as a child process; killed on drop.
pub struct Process {
    pub name: String,
    /// The admin (`/metrics`, `/readyz`) port, when the starter knows it.
    pub admin_port: Option<u16>,
    /// The API (`listen`) port, when the starter knows it.
    pub listen_port: Option<u16>,
    /// The settings file it was started with, kept for its restarts.
    pub(crate) config: Option<tempfile::TempPath>,
    child: Option<Child>,
    /// How the process ended when it was killed, so a wait after a kill reports it at once.
    killed: Option<std::process::ExitStatus>,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// The log's own directory, when the process was given none.
    _dir: Option<tempfile::TempDir>,
}

/// A binary of the workspace beside the running executable (the same profile's build), for
/// tools such as the chaos trials and the benchmarks that run from `target/<profile>/`.
pub fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not built: build the workspace's binaries in the same profile",
                path.display()
            ),
        ))
    }
}

impl Process {
    /// Starts the workspace binary `binary` (built first if need be) with `args` and `env`,
    /// output to a log file of its own. `RUST_LOG` comes from `env`, else the caller's, else
    /// `info`.
    pub fn start(binary: &str, args: &[&str], env: &[(&str, String)]) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{binary}.log"));
        let mut p = Self::spawn(
            crate::binary(binary)?,
            args.iter().map(|a| a.to_string()).collect(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            log,
        )?;
        p._dir = Some(dir);
        Ok(p)
    }

    /// Starts `program` with `args` and `env`, output appended to `log` (kept across restarts).
    pub fn spawn(
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> io::Result<Self> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut p = Self {
            name,
            admin_port: None,
            listen_port: None,
            config: None,
            child: None,
            killed: None,
            program,
            args,
            env,
            log,
            _dir: None,
        };
        p.launch()?;
        Ok(p)
    }

    /// The admin port `/readyz` is asked on.
    pub fn with_admin(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    fn launch(&mut self) -> io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let rust_log = self
            .env
            .iter()
            .find(|(k, _)| k == "RUST_LOG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".into());
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", rust_log)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", self.name)))?;
        self.child = Some(child);
        self.killed = None;
        Ok(())
    }

    /// Waits until `port` on loopback accepts connections, or the process dies.
    pub fn wait_port(&mut self, port: u16, patience: Duration) -> io::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            self.still_running()?;
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} did not listen on {port}:\n{}", self.name, self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// An error with the log when the process has exited.
    fn still_running(&mut self) -> io::Result<()> {
        match self.exited()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "{} exited ({status}):\n{}",
                self.name,
                self.log()
            ))),
        }
    }

    /// `http://127.0.0.1:<listen>`, the API's endpoint.
    pub fn endpoint(&self) -> io::Result<String> {
        self.listen_port
            .map(|port| format!("http://127.0.0.1:{port}"))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no API port", self.name),
                )
            })
    }

    fn admin(&self) -> io::Result<u16> {
        self.admin_port.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no admin port to ask", self.name),
            )
        })
    }

    /// Waits until `/readyz` on the admin port answers 200.
    pub async fn ready(&self, patience: Duration) -> io::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let port = self.admin()?;
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let _ = s.write_all(READYZ).await;
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer).await;
                if is_ok(&answer) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} not ready on {port}:\n{}", self.name, self.log_tail(20)),
                ));
            }
            // Often enough that a start-to-ready time measured with it is not rounded up.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Blocks until `/readyz` on the admin port answers 200, or the process exits.
    pub fn wait_ready(&mut self, patience: Duration) -> io::Result<()> {
        use std::io::{Read as _, Write as _};
        let port = self.admin()?;
        let deadline = Instant::now() + patience;
        loop {
            self.still_running()?;
            let answer = std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| {
                    s.write_all(READYZ).ok()?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).ok()?;
                    Some(answer)
                });
            if answer.is_some_and(|a| is_ok(&a)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} never became ready on {port}:\n{}",
                        self.name,
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(self.killed),
        }
    }

    /// Everything the process wrote so far, restarts included.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Where the log is written.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, ...).
    pub fn signal(&self, name: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.name)))?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} {pid} failed")))
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.killed = c.wait().ok();
        }
    }

    /// Kills the process and starts it again with the same program, arguments and environment.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.launch()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A frozen process must be thawed to die cleanly.
        let _ = self.signal("CONT");
        self.kill();
    }
}
