//! One KV bucket: reads (from any replica or through the stream's leader), compare-and-set
//! writes, watches, and the small membership lists kept beside the records. Services hold a
//! [`Bucket`] from [`crate::Bus`] and never the client's store type, so how a bucket is kept on
//! the wire stays here.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{BusError, Cas, resend};

/// A handle on one of the project's buckets.
#[derive(Clone)]
pub struct Bucket {
    store: kv::Store,
    js: jetstream::Context,
}

/// One change of a watched bucket.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    /// The value written; empty for a delete.
    pub value: Bytes,
    pub revision: u64,
    /// A delete or purge rather than a put.
    pub deleted: bool,
}

impl From<kv::Entry> for Change {
    fn from(e: kv::Entry) -> Self {
        Self {
            deleted: e.operation != kv::Operation::Put,
            key: e.key,
            value: e.value,
            revision: e.revision,
        }
    }
}

/// How long a key read waits for an answer in all, and how long each attempt waits before the
/// read is sent again.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const READ_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a read through a stream's leader waits for an answer, and each attempt.
const LEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const LEADER_READ_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// How many reads [`Bucket::get_many`] keeps in flight.
const READS_IN_FLIGHT: usize = 32;

/// How many times an index update is tried against concurrent writers.
const INDEX_ATTEMPTS: usize = 64;

impl Bucket {
    pub(crate) fn new(store: kv::Store, js: jetstream::Context) -> Self {
        Self { store, js }
    }

    /// The bucket's name, as errors and logs show it.
    pub fn name(&self) -> &str {
        &self.store.name
    }

    fn err(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> BusError {
        BusError::Kv {
            op,
            bucket: self.store.name.clone(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    /// Reads `key`: its value and revision, or `None` when absent or deleted. Any replica may
    /// answer; see [`Bucket::get_from_leader`] for a read a decision rests on.
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, BusError> {
        // A get sent while the stream elects a leader may never be answered, even once the
        // election is over: send it again every READ_RETRY, for READ_TIMEOUT in all.
        let read = resend(READ_TIMEOUT, READ_RETRY, || self.store.entry(key))
            .await
            .ok_or_else(|| self.err("get", key, "timed out"))?;
        match read {
            Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some((e.value, e.revision))),
            Ok(_) => Ok(None),
            Err(e) => Err(self.err("get", key, e)),
        }
    }

    /// A key read through the stream's leader, never a follower: for a read that a decision
    /// rests on. (A follower can be behind or, just after a restart, hold writes the cluster
    /// never committed.)
    pub async fn get_from_leader(&self, key: &str) -> Result<Option<(Bytes, u64)>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let stream = self
            .js
            .get_stream_no_info(crate::setup::bucket_stream(&self.store.name))
            .await
            .map_err(|e| self.err("leader get", key, e))?;
        // While the stream elects a new leader nobody answers, and a request sent before the
        // election is never answered after it: ask again every LEADER_READ_RETRY so the new
        // leader is heard at once, and give up (the caller is told to retry) after
        // LEADER_READ_TIMEOUT rather than the client's long default.
        let subject = crate::setup::key_subject(&self.store.name, key);
        let read = resend(LEADER_READ_TIMEOUT, LEADER_READ_RETRY, || {
            stream.get_last_raw_message_by_subject(&subject)
        })
        .await
        .ok_or_else(|| self.err("leader get", key, "no stream leader answered in time"))?;
        match read {
            Ok(m) => {
                let deleted = m
                    .headers
                    .get("KV-Operation")
                    .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
                Ok((!deleted).then_some((m.payload, m.sequence)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.err("leader get", key, e)),
        }
    }

    /// Creates `key` only if absent (or deleted).
    pub async fn create(&self, key: &str, value: Bytes) -> Result<Cas, BusError> {
        match self.store.create(key, value).await {
            Ok(rev) => Ok(Cas::Won(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Cas::Lost),
            // The client tells "exists" by reading the key after the refused write; a replica
            // that has not seen it yet answers "absent", and the client then reports the write's
            // own refusal, JetStream error 10164 ("wrong last sequence"): the key exists all the
            // same, so the create is lost, not failed.
            Err(e) if e.to_string().contains("10164") => Ok(Cas::Lost),
            Err(e) => Err(self.err("create", key, e)),
        }
    }

    /// Writes `key` only if its revision is still `revision`.
    pub async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<Cas, BusError> {
        match self.store.update(key, value, revision).await {
            Ok(rev) => Ok(Cas::Won(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Cas::Lost),
            // A clustered stream can refuse the same race with JetStream error 10164 ("wrong
            // last sequence", without the number), which the client does not classify: a lost
            // compare-and-set all the same, not a failure to retry from scratch.
            Err(e) if e.to_string().contains("10164") => Ok(Cas::Lost),
            Err(e) => Err(self.err("update", key, e)),
        }
    }

    /// Writes `key` at `revision`, or creates it when `revision` is `None`.
    pub async fn write(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<Cas, BusError> {
        match revision {
            Some(r) => self.update(key, value, r).await,
            None => self.create(key, value).await,
        }
    }

    /// Writes `key` whatever it holds; the new revision.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        self.store
            .put(key, value)
            .await
            .map_err(|e| self.err("put", key, e))
    }

    /// Deletes `key` (a tombstone the watches see).
    pub async fn delete(&self, key: &str) -> Result<(), BusError> {
        self.store
            .delete(key)
            .await
            .map_err(|e| self.err("delete", key, e))
    }

    /// Reads many keys with several requests in flight (a registry of thousands of records read
    /// one round trip at a time takes seconds); the values come back in the keys' order.
    pub async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<Bytes>>, BusError> {
        futures::stream::iter(keys)
            .map(|key| async move { self.get(&key).await.map(|v| v.map(|(b, _)| b)) })
            .buffered(READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// The bucket's latest revision (over every key), asked of the server; `None` when no
    /// server answered.
    pub async fn last_revision(&self) -> Option<u64> {
        self.store
            .stream
            .get_info()
            .await
            .ok()
            .map(|info| info.state.last_sequence)
    }

    /// Every change from `revision` on, in revision order.
    pub async fn watch_from_revision(
        &self,
        revision: u64,
    ) -> Result<impl Stream<Item = Result<Change, BusError>> + use<>, BusError> {
        let watch = self
            .store
            .watch_all_from_revision(revision)
            .await
            .map_err(|e| self.err("watch", ">", e))?;
        Ok(self.changes(watch))
    }

    /// The latest value of every key, then every change as it happens.
    pub async fn watch_latest(
        &self,
    ) -> Result<impl Stream<Item = Result<Change, BusError>> + use<>, BusError> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| self.err("watch", ">", e))?;
        Ok(self.changes(watch))
    }

    fn changes(&self, watch: kv::Watch) -> impl Stream<Item = Result<Change, BusError>> + use<> {
        let name = self.store.name.clone();
        watch.map(move |e| {
            e.map(Change::from).map_err(|e| BusError::Kv {
                op: "watch",
                bucket: name.clone(),
                key: ">".into(),
                message: e.to_string(),
            })
        })
    }

    /// The members of an index kept under `key` (sorted, unique): membership lists save the
    /// server a consumer per listing of a bucket's keys.
    pub async fn index_members(&self, key: &str) -> Result<Vec<String>, BusError> {
        Ok(match self.get(key).await? {
            Some((b, _)) => members_of(&b).into_iter().collect(),
            None => Vec::new(),
        })
    }

    /// Adds or removes a member of the index under `key`, with a compare-and-set loop.
    pub async fn index_update(
        &self,
        key: &str,
        member: &str,
        present: bool,
    ) -> Result<(), BusError> {
        self.index_update_many(key, &[member], present).await
    }

    /// Adds or removes many members of the index under `key` in one compare-and-set loop: one
    /// write where one per member would contend for the key with each other.
    pub async fn index_update_many(
        &self,
        key: &str,
        members: &[&str],
        present: bool,
    ) -> Result<(), BusError> {
        for _ in 0..INDEX_ATTEMPTS {
            let current = self.get(key).await?;
            let mut held = current
                .as_ref()
                .map(|(b, _)| members_of(b))
                .unwrap_or_default();
            let mut changed = false;
            for member in members {
                changed |= if present {
                    held.insert(member.to_string())
                } else {
                    held.remove(*member)
                };
            }
            if !changed {
                return Ok(());
            }
            let value: Bytes = held.into_iter().collect::<Vec<_>>().join("\n").into();
            if let Cas::Won(_) = self.write(key, value, current.map(|(_, r)| r)).await? {
                return Ok(());
            }
        }
        Err(self.err("index", key, "kept changing under concurrent writers"))
    }
}

fn members_of(bytes: &[u8]) -> std::collections::BTreeSet<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}
