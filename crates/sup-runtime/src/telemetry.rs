//! Tracing to stderr (pretty, or JSON lines carrying trace and span ids), OTLP span export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the W3C trace-context propagator that `sup-bus` and
//! gRPC metadata use.

use anyhow::Context as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl LogFormat {
    /// `SUP_LOG_FORMAT` (`json` or `pretty`), when set, wins over the configured format.
    fn from_env_or(configured: LogFormat) -> LogFormat {
        match std::env::var("SUP_LOG_FORMAT")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(f) if f.eq_ignore_ascii_case("pretty") => LogFormat::Pretty,
            _ => configured,
        }
    }
}

/// One JSON object per line: time, level, target, the event's fields, the current span (name and
/// fields) and the OpenTelemetry `trace_id` and `span_id`, so log lines join their traces.
struct JsonWithTrace;

#[derive(Default)]
struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // Read before any span extension is borrowed below: the OpenTelemetry layer locks them.
        let otel = tracing::Span::current().context();
        let otel_span = otel.span();
        let span_context = otel_span.span_context();
        let meta = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        line.insert("fields".into(), fields.0.into());
        if let Some(span) = ctx.lookup_current() {
            let mut current = serde_json::Map::new();
            current.insert("name".into(), span.name().into());
            if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                && let Ok(serde_json::Value::Object(m)) =
                    serde_json::from_str::<serde_json::Value>(f.as_str())
            {
                current.extend(m);
            }
            line.insert("span".into(), current.into());
        }
        if span_context.is_valid() {
            line.insert(
                "trace_id".into(),
                span_context.trace_id().to_string().into(),
            );
            line.insert("span_id".into(), span_context.span_id().to_string().into());
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Keeps the exporter alive; call [`Telemetry::shutdown`] to flush spans at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber and propagator for a service. `RUST_LOG` filters
    /// (default `info`); `SUP_LOG_FORMAT` overrides `format`.
    pub fn init(service: &str, format: LogFormat) -> anyhow::Result<Self> {
        Self::init_with(service, LogFormat::from_env_or(format), "info")
    }

    /// The same for a command-line tool: only warnings and errors unless `RUST_LOG` says more.
    pub fn init_cli(tool: &str) -> anyhow::Result<Self> {
        Self::init_with(tool, LogFormat::from_env_or(LogFormat::Pretty), "warn")
    }

    fn init_with(service: &str, format: LogFormat, default_filter: &str) -> anyhow::Result<Self> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter =
            || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let fmt = match format {
            LogFormat::Pretty => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonWithTrace)
                .with_writer(std::io::stderr)
                .boxed(),
        };
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        // Spans get trace and span ids (for propagation and JSON log lines) even when nothing
        // exports them.
        let mut builder = SdkTracerProvider::builder().with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        );
        if let Some(endpoint) = endpoint {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(std::time::Duration::from_secs(3))
                .build()
                .context("building the OTLP span exporter")?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        let tracer = provider.tracer(service.to_string());
        // The exporter's own transport would otherwise be traced and exported again.
        let otel_filter =
            EnvFilter::new("info,h2=off,hyper=off,tower=off,opentelemetry=off,tonic=off");
        // Context activation (attaching each entered span's context to the thread) is off:
        // propagation reads the tracing span's own context, and the activation stack grew
        // without bound under load in async tasks, making every span exit slower.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_context_activation(false)
            .with_filter(otel_filter);
        let provider = Some(provider);
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
