//! What every SUP service binary shares, so that each `main.rs` stays thin: layered config,
//! telemetry (tracing, OTLP export, W3C propagation), the admin HTTP listener (`/metrics`,
//! `/healthz`, `/readyz`), a gRPC server with health checking and reflection (over TLS or mutual
//! TLS when configured), and graceful
//! shutdown on SIGINT and SIGTERM.

pub mod admin;
pub mod cli;
pub mod config;
pub mod grpc;
pub mod lifecycle;
pub mod rpc_trace;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use admin::{Admin, Readiness};
pub use cli::{ServiceArgs, ServiceInfo, bind, service_main};
pub use config::{ConfigError, load_config};
pub use lifecycle::Lifecycle;
pub use rpc_trace::TracedChannel;
pub use settings::{Listener, OwnSettings, ServiceSettings};
pub use shutdown::{Shutdown, shutdown_signal};
pub use telemetry::{LogFormat, Telemetry};
pub use tls::{ClientTls, ServerTls};
