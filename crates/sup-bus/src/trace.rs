//! W3C trace context (`traceparent`, `tracestate`) in NATS headers, through OpenTelemetry's
//! global propagator (installed by `sup-runtime`).

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

/// Writes the current span's context into `headers`.
pub fn inject(headers: &mut HeaderMap) {
    inject_span(&tracing::Span::current(), headers);
}

/// Writes `span`'s context into `headers`.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn follow(headers: Option<&HeaderMap>, span: &tracing::Span) {
    if let Some(h) = headers {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
        let _ = span.set_parent(cx);
    }
}

/// The current span's `traceparent`, for a record whose later events (read from a log, say, which
/// carries no trace context of its own) should join the trace of the operation that wrote it.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::<String, String>::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` a child of a stored `traceparent`; a malformed one is ignored.
pub fn follow_traceparent(traceparent: &str, span: &tracing::Span) {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}

/// The span in which a consumer processes one stream message, named and attributed per
/// OpenTelemetry's messaging conventions plus the SUP attributes, and a child of the context
/// the message carries.
pub fn process_span(
    msg: &async_nats::jetstream::Message,
    id: &str,
    site: &str,
    server: &str,
    epoch: u64,
) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("{} process", msg.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %msg.subject,
        messaging.message.id = %id,
        sup.site = %site,
        sup.server = %server,
        sup.epoch = epoch,
    );
    follow(msg.headers.as_ref(), &span);
    span
}
