//! The gRPC server every service runs: its own services plus `grpc.health.v1` and server
//! reflection (v1 and v1alpha), so grpcurl and any client work without the .proto files.

use std::future::Future;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;

/// Routes with health and reflection already added; add the service's own, then [`serve`].
pub struct GrpcRoutes {
    pub routes: RoutesBuilder,
    pub health: HealthReporter,
}

/// Starts a route set with health checking and reflection of `sup.v1` and `grpc.health.v1`.
pub fn routes() -> anyhow::Result<GrpcRoutes> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sup_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection (v1)")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sup_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?;
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(GrpcRoutes { routes, health })
}

/// Serves `routes` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// drains in-flight calls.
pub async fn serve(
    routes: RoutesBuilder,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).context("configuring gRPC TLS")?;
    }
    server
        .layer(crate::rpc_trace::ServerTraceLayer)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("serving gRPC")
}
