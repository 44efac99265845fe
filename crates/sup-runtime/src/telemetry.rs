//! Tracing to stderr (pretty or JSON lines), OTLP span export when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, and the W3C trace-context propagator that `sup-bus` and gRPC metadata use.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Keeps the exporter alive; call [`Telemetry::shutdown`] to flush spans at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber and propagator. `RUST_LOG` filters (default `info`).
    pub fn init(service: &str, format: LogFormat) -> anyhow::Result<Self> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter =
            || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = match format {
            LogFormat::Pretty => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .boxed(),
        };
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        let (otel, provider) = match endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(std::time::Duration::from_secs(3))
                    .build()
                    .context("building the OTLP span exporter")?;
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(service.to_string())
                            .build(),
                    )
                    .build();
                let tracer = provider.tracer(service.to_string());
                // The exporter's own transport would otherwise be traced and exported again.
                let otel_filter =
                    EnvFilter::new("info,h2=off,hyper=off,tower=off,opentelemetry=off,tonic=off");
                (
                    Some(
                        tracing_opentelemetry::layer()
                            .with_tracer(tracer)
                            .with_filter(otel_filter),
                    ),
                    Some(provider),
                )
            }
            None => (None, None),
        };
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter()))
            .with(otel)
            .try_init()
            .context("installing the tracing subscriber")?;
        Ok(Self { provider })
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "flushing spans at exit");
        }
    }
}
