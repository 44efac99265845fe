//! W3C trace context and metrics for gRPC, both ends. The server layer makes every call a span
//! named `{rpc.service}/{rpc.method}` (OpenTelemetry RPC conventions) whose parent is the
//! caller's `traceparent` metadata, and counts calls by method and status code; the client
//! wrapper makes every outgoing call a client span and writes its context into the metadata.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::codegen::http::{self, HeaderMap, HeaderName, HeaderValue};
use tower::Service;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// Calls served, by method and status code; one set per process, registered by
/// [`crate::Lifecycle::serve_admin`].
pub struct GrpcMetrics {
    requests: Family<CallLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
}

static METRICS: LazyLock<GrpcMetrics> = LazyLock::new(|| GrpcMetrics {
    requests: Family::default(),
    duration: Family::new_with_constructor(|| {
        Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
    }),
});

impl GrpcMetrics {
    pub fn global() -> &'static GrpcMetrics {
        &METRICS
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_grpc_server_requests",
            "gRPC calls served, by full method and status code",
            self.requests.clone(),
        );
        r.register(
            "sup_grpc_server_duration_seconds",
            "gRPC call latency as served, by full method",
            self.duration.clone(),
        );
    }

    fn observe(&self, method: &str, code: tonic::Code, seconds: f64) {
        self.requests
            .get_or_create(&CallLabels {
                method: method.to_string(),
                code: format!("{code:?}"),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(seconds);
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes `span`'s context into HTTP/2 headers (gRPC metadata).
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// `("sup.v1.Coordinator", "ApplySites")` from `/sup.v1.Coordinator/ApplySites`.
fn split_path(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

/// A span for one call of `full` (`sup.v1.Coordinator/ApplySites`) on the `server` or `client`
/// side, named and attributed per OpenTelemetry's RPC conventions; the status is recorded later.
fn rpc_span(full: &str, kind: &'static str) -> tracing::Span {
    let (service, method) = split_path(full);
    tracing::info_span!(
        "grpc",
        otel.name = %full,
        otel.kind = kind,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// The status of a finished call: trailers-only answers (every error) carry it in the headers;
/// a call whose headers do not is answered `OK` or fails later in its trailers.
fn status_of<B>(answer: &Result<http::Response<B>, impl std::fmt::Display>) -> tonic::Code {
    match answer {
        Ok(r) => r
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(tonic::Code::from_i32)
            .unwrap_or(tonic::Code::Ok),
        Err(_) => tonic::Code::Unavailable,
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The server side: a span and metrics per call. Install with [`ServerTraceLayer`].
#[derive(Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

/// A tower layer for `tonic::transport::Server::layer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTraceLayer;

impl<S> tower::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace { inner }
    }
}

impl<S, B, RB> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let full = req.uri().path().trim_start_matches('/').to_string();
        let span = rpc_span(&full, "server");
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(req.headers()))
        });
        let _ = span.set_parent(parent);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        let started = Instant::now();
        Box::pin(async move {
            let answer = fut.instrument(span.clone()).await;
            let code = status_of(&answer);
            span.record("rpc.grpc.status_code", code as i32);
            GrpcMetrics::global().observe(&full, code, started.elapsed().as_secs_f64());
            answer
        })
    }
}

/// The client side: wrap a channel (`CoordinatorClient::new(TracedChannel::new(channel))`)
/// and each call becomes a client span whose context travels in the metadata.
#[derive(Clone, Debug)]
pub struct TracedChannel<S = tonic::transport::Channel> {
    inner: S,
}

impl<S> TracedChannel<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B, RB> Service<http::Request<B>> for TracedChannel<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let full = req.uri().path().trim_start_matches('/').to_string();
        let span = rpc_span(&full, "client");
        inject(&span, req.headers_mut());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let answer = fut.instrument(span.clone()).await;
            span.record("rpc.grpc.status_code", status_of(&answer) as i32);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_full_method_names() {
        assert_eq!(
            split_path("/sup.v1.Coordinator/ApplySites"),
            ("sup.v1.Coordinator", "ApplySites")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
    }

    #[test]
    fn status_comes_from_trailers_only_headers() {
        let ok: Result<http::Response<()>, String> = Ok(http::Response::new(()));
        assert_eq!(status_of(&ok), tonic::Code::Ok);
        let mut r = http::Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("3"));
        let failed: Result<_, String> = Ok(r);
        assert_eq!(status_of(&failed), tonic::Code::InvalidArgument);
        let broken: Result<http::Response<()>, String> = Err("reset".into());
        assert_eq!(status_of(&broken), tonic::Code::Unavailable);
    }
}
