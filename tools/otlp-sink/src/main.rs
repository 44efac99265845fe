//! `otlp-sink`: accepts OTLP/gRPC trace exports and prints one line per exporting service and
//! batch. It stands in for the OpenTelemetry collector where no collector image can be pulled
//! (the compose stack's registry-free path); anywhere else, run the real collector with
//! `deploy/observability/otel-collector.yaml`.

use std::net::SocketAddr;

use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

#[derive(Debug, Parser)]
#[command(
    name = "otlp-sink",
    version,
    about = "Receive OTLP/gRPC spans and log a summary"
)]
struct Cli {
    /// Where to accept OTLP/gRPC (the collector's usual port is 4317).
    #[arg(long, default_value = "0.0.0.0:4317")]
    listen: SocketAddr,
}

struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "unknown".into());
            let spans: Vec<String> = rs
                .scope_spans
                .iter()
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect();
            println!("{service}: {} span(s): {}", spans.len(), spans.join(", "));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!(
        "otlp-sink: accepting OTLP/gRPC traces on {}",
        listener.local_addr()?
    );
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            sup_runtime::shutdown_signal(),
        )
        .await?;
    Ok(())
}
