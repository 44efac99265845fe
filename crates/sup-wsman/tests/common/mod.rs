//! The Python side of the interop tests: tests/pyhelper.py over stdin/stdout.
//!
//! Python is the one `make tools` installs pypsrp, pyspnego, gssapi and k5test into
//! (`SUP_TOOLS_PYTHON`, default `.tools/bin/python3` of the workspace).

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use data_encoding::BASE64 as B64;

pub struct Py {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    _user_file: Option<tempfile::NamedTempFile>,
}

/// The Python that `make tools` made, with the given modules in it.
fn python(modules: &str) -> PathBuf {
    let path = std::env::var_os("SUP_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.tools/bin/python3"
            ))
        });
    let usable = Command::new(&path)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        usable,
        "{} cannot import {modules}: run `make tools`",
        path.display()
    );
    path
}

impl Py {
    /// Starts the helper; `user_file` is the NTLM server's account list (`DOMAIN:user:password`
    /// lines).
    pub fn spawn(args: &[&str], user_file: Option<&str>) -> Py {
        let modules = if args.first() == Some(&"kerberos-server") {
            "spnego, pypsrp, gssapi, krb5"
        } else {
            "spnego, pypsrp"
        };
        let user_file = user_file.map(|text| {
            let mut f = tempfile::NamedTempFile::new().expect("user file");
            f.write_all(text.as_bytes()).expect("user file");
            f
        });
        let mut command = Command::new(python(modules));
        command
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyhelper.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(file) = &user_file {
            command.env("NTLM_USER_FILE", file.path());
        }
        let mut child = command.spawn().expect("spawn python helper");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Py {
            child,
            stdin,
            stdout,
            _user_file: user_file,
        }
    }

    /// One line the helper printed on its own (the Kerberos server's realm line).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from helper");
        line
    }

    /// Sends one command; Ok(fields after "OK") or Err(error text).
    pub fn call(&mut self, line: &str) -> Result<Vec<String>, String> {
        let stdin = self.stdin.as_mut().expect("helper stdin");
        writeln!(stdin, "{line}").expect("write to helper");
        stdin.flush().expect("flush");
        let reply = self.read_line();
        let mut fields = reply.split_whitespace().map(str::to_owned);
        match fields.next().as_deref() {
            Some("OK") => Ok(fields.collect()),
            Some("ERR") => Err(fields.collect::<Vec<_>>().join(" ")),
            _ => panic!("helper died or misbehaved: {reply:?}"),
        }
    }

    /// STEP: returns (token, complete).
    pub fn step(&mut self, token: Option<&[u8]>) -> Result<(Option<Vec<u8>>, bool), String> {
        let fields = self.call(&format!("STEP {}", enc(token)))?;
        Ok((dec(&fields[0]), fields[1] == "1"))
    }

    pub fn wrap(&mut self, plain: &[u8]) -> Vec<u8> {
        let fields = self
            .call(&format!("WRAP {}", B64.encode(plain)))
            .expect("python wrap");
        dec(&fields[0]).expect("body")
    }

    pub fn unwrap(&mut self, body: &[u8]) -> Result<Vec<u8>, String> {
        let fields = self.call(&format!("UNWRAP {}", B64.encode(body)))?;
        Ok(dec(&fields[0]).unwrap_or_default())
    }
}

impl Drop for Py {
    /// Closes stdin so the helper ends by itself and stops the KDC it may have started; kills
    /// it only if it does not.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn enc(token: Option<&[u8]>) -> String {
    token.map(|t| B64.encode(t)).unwrap_or_else(|| "-".into())
}

pub fn dec(field: &str) -> Option<Vec<u8>> {
    (field != "-").then(|| {
        B64.decode(field.as_bytes())
            .expect("helper sent bad base64")
    })
}
