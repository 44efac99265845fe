//! Atomic batches (JetStream's atomic batch publish, nats-server 2.12 and later): a run of
//! messages stored together, in order and with nothing between them, or not at all. A publisher
//! that must keep its messages in order can then have many in one round trip: a batch that fails
//! leaves no later message stored ahead of an earlier one.
//!
//! On the wire (ADR-50, "JetStream Batch Publishing"): every message carries `Nats-Batch-Id` and
//! its `Nats-Batch-Sequence` from 1; the last one also `Nats-Batch-Commit: 1` and is a request,
//! answered with the stream's ack for the batch (`batch`, `count`) or an error.

use std::time::Duration;

use async_nats::HeaderMap;

use crate::{Bus, BusError, Outgoing, trace};

/// The most messages one batch may hold (the server's limit is 1,000).
pub const MAX_ATOMIC_BATCH: usize = 500;

/// How long the commit waits for the stream's answer.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream's "atomic publish batch contains duplicate message id" (10201): a message of the
/// batch is already in the stream (inside its duplicate window), so none of them was stored.
/// "duplicate message id is in process" (10158): another publisher's copy of one of them is
/// being stored at this moment; none of the batch was.
const ERR_DUPLICATE: [u64; 2] = [10201, 10158];
/// "atomic publish is disabled" (10174): the stream does not allow atomic batches.
const ERR_DISABLED: u64 = 10174;

/// What became of an atomic batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every message stored, in order, the last at this stream sequence.
    Stored { last_sequence: u64 },
    /// Nothing stored: the stream already holds one of the messages (another publisher's copy,
    /// or this one's from an attempt whose answer was lost). Publish them one by one.
    HasDuplicate,
    /// The stream takes no atomic batches: publish one by one.
    Unsupported,
}

#[derive(serde::Deserialize)]
struct Ack {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    error: Option<AckError>,
}

#[derive(serde::Deserialize)]
struct AckError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl Bus {
    /// Publishes `items` as one atomic batch (at most [`MAX_ATOMIC_BATCH`]); each keeps its
    /// `Nats-Msg-Id`. An error means the outcome is unknown (the commit's answer was lost) or
    /// nothing was stored: publishing the same batch again is safe, as a copy already stored
    /// answers [`BatchOutcome::HasDuplicate`].
    pub async fn publish_atomic(&self, items: Vec<Outgoing>) -> Result<BatchOutcome, BusError> {
        let count = items.len();
        let Some(last_subject) = items.last().map(|i| i.subject.clone()) else {
            return Ok(BatchOutcome::Stored { last_sequence: 0 });
        };
        if count > MAX_ATOMIC_BATCH {
            return Err(BusError::Publish {
                subject: last_subject,
                message: format!(
                    "an atomic batch holds at most {MAX_ATOMIC_BATCH} messages, not {count}"
                ),
            });
        }
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let err = |subject: &str, message: String| BusError::Publish {
            subject: subject.to_string(),
            message,
        };
        let mut commit = None;
        for (
            index,
            Outgoing {
                subject,
                msg_id,
                payload,
                span,
            },
        ) in items.into_iter().enumerate()
        {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (index + 1).to_string().as_str());
            match &span {
                Some(span) => trace::inject_span(span, &mut headers),
                None => trace::inject(&mut headers),
            }
            if index + 1 == count {
                headers.insert("Nats-Batch-Commit", "1");
                commit = Some((subject, headers, payload));
            } else {
                self.client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                    .map_err(|e| err(&subject, e.to_string()))?;
            }
        }
        let Some((subject, headers, payload)) = commit else {
            return Ok(BatchOutcome::Stored { last_sequence: 0 });
        };
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(COMMIT_TIMEOUT));
        let answer = self
            .client
            .send_request(subject.clone(), request)
            .await
            .map_err(|e| err(&subject, format!("committing an atomic batch: {e}")))?;
        let ack: Ack = serde_json::from_slice(&answer.payload)
            .map_err(|e| err(&subject, format!("the batch's ack is not JetStream's: {e}")))?;
        match ack.error {
            Some(e) if ERR_DUPLICATE.contains(&e.err_code) => Ok(BatchOutcome::HasDuplicate),
            Some(e) if e.err_code == ERR_DISABLED => Ok(BatchOutcome::Unsupported),
            Some(e) => Err(err(
                &subject,
                format!("atomic batch refused: {} ({})", e.description, e.err_code),
            )),
            // A server that knows no batches stored each message as it came, the last answered
            // as any publish: stored, in order, though not atomically.
            None if ack.batch.is_none() => Ok(BatchOutcome::Stored {
                last_sequence: ack.seq,
            }),
            None if ack.count != Some(count as u64) => Err(err(
                &subject,
                format!(
                    "the stream stored {} of the batch's {count} messages",
                    ack.count.unwrap_or(0)
                ),
            )),
            None => Ok(BatchOutcome::Stored {
                last_sequence: ack.seq,
            }),
        }
    }
}
