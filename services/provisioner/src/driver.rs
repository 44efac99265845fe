//! How the provisioner reaches a site system: through the site's SMS Provider over WinRM
//! ([`crate::smsprov`], for the sites of `[providers]`), or through a site-system agent over
//! gRPC (each call a client span, its trace context in the metadata) for every other site; the
//! WSUS emulator implements that agent for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use sup_proto::v1::{self, site_system_agent_client::SiteSystemAgentClient};
use sup_runtime::TracedChannel;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The agent could not be reached or timed out: retrying can help.
    #[error("agent at {endpoint} unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The agent answered with an error: retrying the same request will not help.
    #[error("agent at {endpoint} refused: {message}")]
    Refused { endpoint: String, message: String },
}

impl DriverError {
    pub fn retryable(&self) -> bool {
        matches!(self, DriverError::Unreachable { .. })
    }
}

/// What the provisioner needs from a site system.
pub trait SiteDriver: Send + Sync + 'static {
    fn wsus_info(
        &self,
        site: &str,
        server: &str,
    ) -> impl Future<Output = Result<v1::WsusInfo, DriverError>> + Send;
    fn install_role(
        &self,
        req: v1::AgentInstallRoleRequest,
    ) -> impl Future<Output = Result<v1::AgentReply, DriverError>> + Send;
    fn remove_role(
        &self,
        req: v1::AgentRemoveRoleRequest,
    ) -> impl Future<Output = Result<v1::AgentReply, DriverError>> + Send;
    fn configure(
        &self,
        req: v1::AgentConfigureRequest,
    ) -> impl Future<Output = Result<v1::AgentReply, DriverError>> + Send;
    fn start_sync(
        &self,
        req: v1::AgentStartSyncRequest,
    ) -> impl Future<Output = Result<v1::AgentReply, DriverError>> + Send;
}

/// The agent endpoint of each server: a table (exact names, then `*`), else a template with
/// `{server}`.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub template: String,
    pub table: BTreeMap<String, String>,
}

impl Endpoints {
    pub fn of(&self, server: &str) -> String {
        self.table
            .get(server)
            .or_else(|| self.table.get("*"))
            .cloned()
            .unwrap_or_else(|| self.template.replace("{server}", server))
    }
}

pub struct GrpcDriver {
    endpoints: Endpoints,
    timeout: Duration,
    /// TLS for `https://` agent endpoints.
    tls: Option<ClientTlsConfig>,
    channels: Mutex<BTreeMap<String, Channel>>,
}

impl GrpcDriver {
    pub fn new(endpoints: Endpoints, timeout: Duration, tls: Option<ClientTlsConfig>) -> Self {
        Self {
            endpoints,
            timeout,
            tls,
            channels: Mutex::new(BTreeMap::new()),
        }
    }

    fn client(
        &self,
        server: &str,
    ) -> Result<(String, SiteSystemAgentClient<TracedChannel>), DriverError> {
        let endpoint = self.endpoints.of(server);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(&endpoint) {
            return Ok((
                endpoint,
                SiteSystemAgentClient::new(TracedChannel::new(c.clone())),
            ));
        }
        let refused = |message: String| DriverError::Refused {
            endpoint: endpoint.clone(),
            message,
        };
        let mut builder = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| refused(format!("invalid endpoint: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.timeout);
        if endpoint.starts_with("https://") {
            let tls = self.tls.clone().ok_or_else(|| {
                refused(
                    "an https:// agent endpoint needs [agent_tls] in the provisioner's config"
                        .into(),
                )
            })?;
            builder = builder
                .tls_config(tls)
                .map_err(|e| refused(format!("TLS: {e}")))?;
        }
        let channel = builder.connect_lazy();
        channels.insert(endpoint.clone(), channel.clone());
        Ok((
            endpoint,
            SiteSystemAgentClient::new(TracedChannel::new(channel)),
        ))
    }
}

fn classify(endpoint: &str, s: tonic::Status) -> DriverError {
    let message = s.message().to_string();
    match s.code() {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Unknown
        | tonic::Code::Cancelled => DriverError::Unreachable {
            endpoint: endpoint.to_string(),
            message: if message.is_empty() {
                format!("{:?}", s.code())
            } else {
                message
            },
        },
        _ => DriverError::Refused {
            endpoint: endpoint.to_string(),
            message,
        },
    }
}

impl SiteDriver for GrpcDriver {
    async fn wsus_info(&self, _site: &str, server: &str) -> Result<v1::WsusInfo, DriverError> {
        let (ep, mut c) = self.client(server)?;
        c.get_wsus_info(v1::GetWsusInfoRequest {
            server: server.into(),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| classify(&ep, s))
    }

    async fn install_role(
        &self,
        req: v1::AgentInstallRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let (ep, mut c) = self.client(&req.server)?;
        c.install_role(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| classify(&ep, s))
    }

    async fn remove_role(
        &self,
        req: v1::AgentRemoveRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let (ep, mut c) = self.client(&req.server)?;
        c.remove_role(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| classify(&ep, s))
    }

    async fn configure(
        &self,
        req: v1::AgentConfigureRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let (ep, mut c) = self.client(&req.server)?;
        c.configure_component(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| classify(&ep, s))
    }

    async fn start_sync(
        &self,
        req: v1::AgentStartSyncRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        let (ep, mut c) = self.client(&req.server)?;
        c.start_sync(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| classify(&ep, s))
    }
}

/// The SMS Provider driver for the sites it serves, the agent driver for the rest.
pub struct Drivers {
    pub agents: GrpcDriver,
    pub providers: std::sync::Arc<crate::smsprov::SmsProviderDriver>,
}

impl SiteDriver for Drivers {
    async fn wsus_info(&self, site: &str, server: &str) -> Result<v1::WsusInfo, DriverError> {
        if self.providers.serves(site) {
            self.providers.wsus_info(site, server).await
        } else {
            self.agents.wsus_info(site, server).await
        }
    }

    async fn install_role(
        &self,
        req: v1::AgentInstallRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        if self.providers.serves(&req.site) {
            self.providers.install_role(req).await
        } else {
            self.agents.install_role(req).await
        }
    }

    async fn remove_role(
        &self,
        req: v1::AgentRemoveRoleRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        if self.providers.serves(&req.site) {
            self.providers.remove_role(req).await
        } else {
            self.agents.remove_role(req).await
        }
    }

    async fn configure(
        &self,
        req: v1::AgentConfigureRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        if self.providers.serves(&req.site) {
            self.providers.configure(req).await
        } else {
            self.agents.configure(req).await
        }
    }

    async fn start_sync(
        &self,
        req: v1::AgentStartSyncRequest,
    ) -> Result<v1::AgentReply, DriverError> {
        if self.providers.serves(&req.site) {
            self.providers.start_sync(req).await
        } else {
            self.agents.start_sync(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_table_then_wildcard_then_template() {
        let e = Endpoints {
            template: "http://{server}:7700".into(),
            table: BTreeMap::from([(
                "a.corp.example.com".to_string(),
                "http://10.0.0.1:7700".to_string(),
            )]),
        };
        assert_eq!(e.of("a.corp.example.com"), "http://10.0.0.1:7700");
        assert_eq!(e.of("b.corp.example.com"), "http://b.corp.example.com:7700");
        let mut w = e.clone();
        w.table.insert("*".into(), "http://127.0.0.1:7700".into());
        assert_eq!(w.of("b.corp.example.com"), "http://127.0.0.1:7700");
    }
}
