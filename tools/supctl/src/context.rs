//! What every command gets from the global flags: where the services are, the TLS to reach
//! them, and how long a change is sent again. Built once from the command line and passed down.

use super::*;

pub(crate) struct Context {
    pub(crate) coordinator: String,
    pub(crate) scheduler: String,
    pub(crate) health: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    retry_for: Duration,
}

impl Context {
    pub(crate) fn from_cli(cli: &Cli) -> Result<Self, Failure> {
        let tls = match &cli.tls.tls_ca {
            Some(ca) => Some(
                sup_runtime::ClientTls {
                    ca_file: ca.clone(),
                    cert_file: cli.tls.tls_cert.clone(),
                    key_file: cli.tls.tls_key.clone(),
                    domain: cli.tls.tls_domain.clone(),
                }
                .tonic()
                .map_err(|e| invalid(format!("{e:#}")))?,
            ),
            None => None,
        };
        Ok(Self {
            coordinator: cli.coordinator.clone(),
            scheduler: cli.scheduler.clone(),
            health: cli.health.clone(),
            tls,
            retry_for: cli.retry_for,
        })
    }

    /// A client of the coordinator, once it says it is serving.
    pub(crate) async fn coordinator(&self) -> Result<CoordinatorClient<TracedChannel>, Failure> {
        let channel = self
            .channel(&self.coordinator, "coordinator", "sup.v1.Coordinator")
            .await?;
        Ok(CoordinatorClient::new(channel)
            .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES))
    }

    /// Connects and waits (a few seconds at most) until the service says it is serving: a
    /// service that has just started accepts connections before it can answer.
    pub(crate) async fn channel(
        &self,
        endpoint: &str,
        what: &str,
        service: &str,
    ) -> Result<TracedChannel, Failure> {
        let mut builder = Channel::from_shared(endpoint.to_string())
            .map_err(|e| invalid(format!("--{what} {endpoint}: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        let https = endpoint.starts_with("https://");
        match (&self.tls, https) {
            (Some(tls), true) => {
                builder = builder
                    .tls_config(tls.clone())
                    .map_err(|e| invalid(format!("--{what} {endpoint}: {e}")))?;
            }
            (None, true) => {
                return Err(invalid(format!(
                    "--{what} {endpoint} is https: give --tls-ca (or SUP_TLS_CA), the CA that signed its certificate"
                )));
            }
            (Some(_), false) => {
                return Err(invalid(format!(
                    "--tls-ca is given but --{what} {endpoint} is not https://; use https://"
                )));
            }
            (None, false) => {}
        }
        let channel = builder
            .connect()
            .await
            .with_context(|| format!("connecting to the {what} at {endpoint}"))?;
        let channel = TracedChannel::new(channel);
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        for _ in 0..40 {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.to_string(),
                })
                .await;
            match answer {
                Ok(r) if r.get_ref().status == serving => return Ok(channel),
                // A server without the health service: nothing to wait for.
                Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(channel),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Err(Failure {
            code: 1,
            message: format!(
                "the {what} at {endpoint} accepts connections but is not serving; see its logs"
            ),
        })
    }

    /// Sends a change, again with the same op id while the service answers UNAVAILABLE, for
    /// `--retry-for` in all.
    pub(crate) async fn change<Req: Clone, T, Fut>(
        &self,
        request: Req,
        call: impl FnMut(Req) -> Fut,
    ) -> Result<T, tonic::Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        send(request, self.retry_for, call).await
    }
}
