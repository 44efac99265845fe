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

    /// Runs `task`, given the stop signal, until it returns (it should return soon after the
    /// signal turns `true`).
    pub fn spawn_until_stopped<Fut>(
        &mut self,
        name: &'static str,
        task: impl FnOnce(watch::Receiver<bool>) -> Fut,
    ) where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let running = task(self.stop());
        self.spawn(name, async move {
            running.await;
            Ok(())
        });
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

    /// Serves one gRPC API, beside health checking and reflection, and reports it serving.
    pub async fn serve_grpc_api<S>(
        &mut self,
        listener: TcpListener,
        api: S,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> anyhow::Result<()>
    where
        S: tower::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let grpc = crate::grpc::routes()?;
        let mut routes = grpc.routes;
        routes.add_service(api);
        grpc.health.set_serving::<S>().await;
        self.serve_grpc(listener, routes, tls);
        Ok(())
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
