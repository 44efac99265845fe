//! One `supctl apply` of one role is one trace: spans from supctl, the coordinator, the
//! provisioner and the log watcher (and the agent), received by an OTLP collector running in
//! this test, with every parent link intact.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::procedure::stack;
use crate::support::*;

#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: Vec<u8>,
    span: Vec<u8>,
    parent: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attributes = s
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(s)) => s.clone(),
                                Some(Value::IntValue(i)) => i.to_string(),
                                Some(Value::BoolValue(b)) => b.to_string(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    spans.push(Received {
                        service: service.clone(),
                        name: s.name,
                        trace: s.trace_id,
                        span: s.span_id,
                        parent: s.parent_span_id,
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// What the trace rooted at `supctl apply` holds, or why it is not complete yet.
fn check_trace(spans: &[Received]) -> Result<BTreeSet<String>, String> {
    let root = spans
        .iter()
        .find(|s| s.service == "supctl" && s.name == "supctl apply")
        .ok_or("no `supctl apply` span yet")?;
    if !root.parent.is_empty() {
        return Err("the supctl span has a parent".into());
    }
    let trace: Vec<&Received> = spans.iter().filter(|s| s.trace == root.trace).collect();
    let ids: BTreeSet<&[u8]> = trace.iter().map(|s| s.span.as_slice()).collect();
    let orphans: Vec<String> = trace
        .iter()
        .filter(|s| !s.parent.is_empty() && !ids.contains(s.parent.as_slice()))
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    if !orphans.is_empty() {
        return Err(format!("spans whose parent is missing: {orphans:?}"));
    }
    let services: BTreeSet<String> = trace.iter().map(|s| s.service.clone()).collect();
    for want in [
        "supctl",
        "sup-coordinator",
        "sup-provisioner",
        "sup-logwatch",
    ] {
        if !services.contains(want) {
            return Err(format!("no span from {want} yet (have {services:?})"));
        }
    }
    Ok(services)
}

const ONE_ROLE: &str = r#"
[[site]]
code = "CEN"
name = "Central site"
site_server = "cen-site.corp.example.com"

[[site.site_system]]
server = "cen-sup01.corp.example.com"

[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
"#;

// Multi-threaded: the collector must answer while this thread waits on the processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_is_one_trace_across_every_service() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // SAFETY: nextest runs each test in its own process, and nothing else in this one reads
    // the environment concurrently; every binary started below inherits it.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    let s = stack(&[]);
    let file = site_file(ONE_ROLE);
    let out = supctl(
        &s.coordinator.endpoint,
        &[
            "apply",
            "-f",
            file.path().to_str().expect("path"),
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    assert!(
        out.status.success(),
        "apply: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let services = loop {
        let spans = collector
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match check_trace(&spans) {
            Ok(services) => break services,
            Err(why) if Instant::now() > deadline => {
                let summary: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{} {} parent={}", s.service, s.name, !s.parent.is_empty()))
                    .collect();
                panic!("{why}\nreceived:\n{}", summary.join("\n"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(services.contains("wsus-emulator"), "{services:?}");

    // The spans follow the RPC and messaging conventions, with the SUP attributes.
    let spans = collector
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let root = spans
        .iter()
        .find(|s| s.name == "supctl apply")
        .expect("root")
        .trace
        .clone();
    let trace: Vec<&Received> = spans.iter().filter(|s| s.trace == root).collect();
    let apply = trace
        .iter()
        .find(|s| s.service == "sup-coordinator" && s.name == "sup.v1.Coordinator/ApplySites")
        .expect("the coordinator's server span");
    assert_eq!(
        apply.attributes.get("rpc.system").map(String::as_str),
        Some("grpc")
    );
    assert_eq!(
        apply.attributes.get("rpc.method").map(String::as_str),
        Some("ApplySites")
    );
    let command = trace
        .iter()
        .find(|s| s.service == "sup-provisioner" && s.attributes.contains_key("messaging.system"))
        .expect("the provisioner's consumer span");
    assert_eq!(
        command
            .attributes
            .get("messaging.system")
            .map(String::as_str),
        Some("nats")
    );
    assert!(
        command
            .attributes
            .get("messaging.destination.name")
            .is_some_and(|d| d.starts_with("sup.cmd.")),
        "{command:?}"
    );
    assert_eq!(
        command.attributes.get("sup.site").map(String::as_str),
        Some("CEN")
    );
    assert!(command.attributes.contains_key("sup.server"));
    assert!(command.attributes.contains_key("sup.epoch"));
    assert!(
        trace.iter().any(|s| s.service == "sup-provisioner"
            && s.name.starts_with("sup.v1.SiteSystemAgent/")
            && s.attributes.get("rpc.system").map(String::as_str) == Some("grpc")),
        "the agent call is a client span"
    );
    assert!(
        trace.iter().any(|s| s.service == "sup-logwatch"
            && s.attributes
                .get("sup.milestone")
                .is_some_and(|m| !m.is_empty())),
        "milestones join the trace"
    );
    server.abort();
}
