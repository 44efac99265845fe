//! `sup-provisioner`: everything but the command line and telemetry is in the library.

fn main() -> std::process::ExitCode {
    use sup_provisioner::{SERVICE, serve};
    sup_runtime::service_main(SERVICE, serve)
}
