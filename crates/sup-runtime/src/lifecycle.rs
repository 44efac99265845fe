//! The shape every service's `run` shares: background tasks, the admin listener and the gRPC
//! server all stop on one signal, and readiness is up only between start and shutdown.

use std::future::Future;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::RoutesBuilder;

use crate::admin::{Admin, Readiness};

pub struct Lifecycle {
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    readiness: Readiness,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        Self {
            stop_tx,
            stop_rx,
            tasks: Vec::new(),
            readiness: Readiness::default(),
        }
    }

    /// A receiver that turns `true` when the service stops, for loops to watch.
    pub fn stop(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// A future that resolves when the service stops.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Runs a task until the service stops; its error is reported at the end.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks.push((name, tokio::spawn(task)));
    }

    /// Serves `/metrics` (with the gRPC server metrics added), `/healthz` and `/readyz` on
    /// `listener`.
    pub fn serve_admin(&mut self, listener: TcpListener, mut registry: Registry) {
        crate::rpc_trace::GrpcMetrics::global().register(&mut registry);
        let mut admin = Admin::new(registry);
        admin.readiness = self.readiness.clone();
        let stopped = self.stopped();
        self.spawn("admin", async move {
            admin
                .serve(listener, stopped)
                .await
                .context("admin listener")
        });
    }

    /// Serves gRPC `routes` (health and reflection included by `grpc::routes`).
    pub fn serve_grpc(
        &mut self,
        listener: TcpListener,
        routes: RoutesBuilder,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) {
        let stopped = self.stopped();
        self.spawn("grpc", crate::grpc::serve(routes, listener, tls, stopped));
    }

    /// Ready until `shutdown` resolves; then everything stops and is awaited.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.readiness.set(true);
        shutdown.await;
        self.readiness.set(false);
        let _ = self.stop_tx.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(task = name, error = %e, "task failed");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("task {name} panicked: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
