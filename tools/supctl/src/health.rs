//! `supctl health`: each SUP server's WSUS health as the health service last probed it, or a
//! probe now (`--probe SERVER`).

use clap::Args;
use serde_json::{Value, json};
use sup_proto::convert::health_name;
use sup_proto::v1::{self, health_service_client::HealthServiceClient};

use crate::format::{self, Format};
use crate::{Context, Failure, output};

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Only this site's servers.
    #[arg(long)]
    pub site: Option<String>,
    /// Probe this server now instead of showing the last probe.
    #[arg(long, value_name = "SERVER")]
    pub probe: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// `PROBE_RESULT_CONNECT_FAILED` → `connect_failed`.
fn result_name(r: i32) -> String {
    v1::ProbeResult::try_from(r)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("PROBE_RESULT_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn report_json(r: &v1::HealthReport) -> Value {
    json!({
        "site": r.site,
        "server": r.server,
        "health": health_name(r.health),
        "checked": output::time(r.checked.as_ref()),
        "prober": if r.prober.is_empty() { Value::Null } else { r.prober.clone().into() },
        "components": r.components.iter().map(|c| json!({
            "component": c.component,
            "result": result_name(c.result),
            "detail": if c.detail.is_empty() { Value::Null } else { c.detail.clone().into() },
            "latency_ms": c.latency_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Wide adds every component's result and latency.
fn table(reports: &[v1::HealthReport], wide: bool) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let failing: Vec<String> = r
                .components
                .iter()
                .filter(|c| c.result != v1::ProbeResult::Ok as i32)
                .map(|c| format!("{}: {}", c.component, result_name(c.result)))
                .collect();
            let mut row = vec![
                r.site.clone(),
                r.server.clone(),
                health_name(r.health).to_string(),
                output::time(r.checked.as_ref()).unwrap_or_default(),
                if failing.is_empty() {
                    "-".into()
                } else {
                    failing.join(", ")
                },
            ];
            if wide {
                row.push(if r.prober.is_empty() {
                    "-".into()
                } else {
                    r.prober.clone()
                });
                row.push(
                    r.components
                        .iter()
                        .map(|c| {
                            format!(
                                "{} {} {}ms",
                                c.component,
                                result_name(c.result),
                                c.latency_ms
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            row
        })
        .collect();
    let mut header = vec!["SITE", "SERVER", "HEALTH", "CHECKED", "FAILING"];
    if wide {
        header.extend(["PROBER", "COMPONENTS"]);
    }
    crate::table::render(&header, &rows, "")
}

pub async fn health(ctx: &Context, args: HealthArgs) -> Result<(), Failure> {
    let channel = ctx
        .channel(&ctx.health, "health service", "sup.v1.HealthService")
        .await?;
    let mut c = HealthServiceClient::new(channel)
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    let site = args.site.clone().unwrap_or_default().to_ascii_uppercase();
    let reports = match &args.probe {
        Some(server) => vec![
            c.probe_now(v1::ProbeNowRequest {
                site,
                server: server.clone(),
            })
            .await?
            .into_inner(),
        ],
        None => {
            c.get_health(v1::GetHealthRequest {
                site,
                server: String::new(),
            })
            .await?
            .into_inner()
            .reports
        }
    };
    let json = Value::Array(reports.iter().map(report_json).collect()).to_string();
    let names: Vec<String> = reports.iter().map(|r| r.server.clone()).collect();
    format::print(args.output, &json, &names, |wide| table(&reports, wide))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_health_and_results() {
        let r = v1::HealthReport {
            site: "CEN".into(),
            server: "cen-sup01.corp.example.com".into(),
            health: v1::Health::Unhealthy as i32,
            components: vec![
                v1::ComponentProbe {
                    component: "tcp".into(),
                    result: v1::ProbeResult::Ok as i32,
                    detail: String::new(),
                    latency_ms: 1,
                },
                v1::ComponentProbe {
                    component: "tls".into(),
                    result: v1::ProbeResult::TlsFailed as i32,
                    detail: "certificate expired".into(),
                    latency_ms: 3,
                },
            ],
            checked: None,
            prober: "health-0".into(),
        };
        let j = report_json(&r);
        assert_eq!(j["prober"], "health-0");
        assert_eq!(j["health"], "unhealthy");
        assert_eq!(j["components"][1]["result"], "tls_failed");
        assert_eq!(j["components"][0]["detail"], Value::Null);
        let t = table(std::slice::from_ref(&r), false);
        assert!(t.contains("tls: tls_failed") && !t.contains("tcp:"), "{t}");
        assert!(!t.contains("COMPONENTS"), "{t}");
        let wide = table(std::slice::from_ref(&r), true);
        assert!(
            wide.contains("COMPONENTS") && wide.contains("tcp ok 1ms, tls tls_failed 3ms"),
            "{wide}"
        );
    }
}
