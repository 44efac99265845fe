//! `sup-scheduler`: everything but the command line and telemetry is in the library.

fn main() -> std::process::ExitCode {
    use sup_scheduler::{SERVICE, Settings, serve};
    sup_runtime::service_main(SERVICE, |s: &Settings| s.log_format, serve)
}
