//! The console's sources: the coordinator (sites, status, events, activation) and the scheduler
//! (synchronization runs, Run Synchronization). Channels connect lazily and reconnect by
//! themselves, so the console starts and serves (with an error on the page) while a service is
//! down.

use std::time::Duration;

use anyhow::Context as _;
use sup_proto::MAX_MESSAGE_BYTES;
use sup_proto::v1::coordinator_client::CoordinatorClient;
use sup_proto::v1::scheduler_client::SchedulerClient;
use sup_runtime::{ClientTls, TracedChannel};
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct Sources {
    coordinator: CoordinatorClient<TracedChannel>,
    scheduler: Option<SchedulerClient<TracedChannel>>,
}

fn channel(what: &str, url: &str, tls: Option<&ClientTls>) -> anyhow::Result<TracedChannel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{what} {url} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    match (url.starts_with("https://"), tls) {
        (true, Some(tls)) => {
            endpoint = endpoint
                .tls_config(tls.tonic()?)
                .with_context(|| format!("TLS for the {what} at {url}"))?;
        }
        (true, None) => {
            anyhow::bail!(
                "the {what} {url} is https: give [grpc_tls] ca_file, the CA that signed its certificate"
            )
        }
        (false, Some(_)) => {
            anyhow::bail!("[grpc_tls] is set but the {what} {url} is not https://; use https://")
        }
        (false, None) => {}
    }
    let channel: Channel = endpoint.connect_lazy();
    Ok(TracedChannel::new(channel))
}

impl Sources {
    pub fn connect(
        coordinator: &str,
        scheduler: &str,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Self> {
        let coordinator = CoordinatorClient::new(channel("coordinator", coordinator, tls)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let scheduler = if scheduler.is_empty() {
            None
        } else {
            Some(
                SchedulerClient::new(channel("scheduler", scheduler, tls)?)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
        };
        Ok(Self {
            coordinator,
            scheduler,
        })
    }

    pub fn coordinator(&self) -> CoordinatorClient<TracedChannel> {
        self.coordinator.clone()
    }

    /// `None` when the console is configured without a scheduler.
    pub fn scheduler(&self) -> Option<SchedulerClient<TracedChannel>> {
        self.scheduler.clone()
    }
}
