//! Records one service writes and another reads, typed, with the key they live under: no reader
//! parses another service's record as loose JSON.

use bytes::Bytes;
use serde::Deserialize;
use sup_proto::prost::Message as _;
use sup_proto::v1::ScheduleRecord;

use crate::{Bus, BusError, subjects};

pub use subjects::schedule_key;

/// The JSON form earlier versions stored, still read so an upgrade keeps each site's plan.
#[derive(Deserialize)]
struct ScheduleJson {
    next: Option<i64>,
    retry_at: Option<i64>,
    #[serde(default)]
    basis: Option<String>,
}

pub fn encode_schedule(record: &ScheduleRecord) -> Bytes {
    record.encode_to_vec().into()
}

/// A stored schedule record: protobuf, or the JSON object earlier versions wrote.
pub fn decode_schedule(key: &str, bytes: &[u8]) -> Result<ScheduleRecord, BusError> {
    if bytes.first() == Some(&b'{')
        && let Ok(j) = serde_json::from_slice::<ScheduleJson>(bytes)
    {
        return Ok(ScheduleRecord {
            next: j.next,
            retry_at: j.retry_at,
            basis: j.basis,
        });
    }
    ScheduleRecord::decode(bytes).map_err(|source| BusError::Decode {
        subject: key.to_string(),
        source,
    })
}

impl Bus {
    /// A site's schedule record and its revision (for a compare-and-set), or `None`.
    pub async fn schedule_record(
        &self,
        site: &str,
    ) -> Result<Option<(ScheduleRecord, u64)>, BusError> {
        let key = schedule_key(site);
        match self.sites().get(&key).await? {
            Some((bytes, revision)) => Ok(Some((decode_schedule(&key, &bytes)?, revision))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let r = ScheduleRecord {
            next: Some(1_796_270_400),
            retry_at: None,
            basis: Some("0001200000100008 America/New_York".into()),
        };
        assert_eq!(
            decode_schedule("CEN.sched", &encode_schedule(&r)).expect("decode"),
            r
        );
        let empty = ScheduleRecord::default();
        assert_eq!(
            decode_schedule("CEN.sched", &encode_schedule(&empty)).expect("decode"),
            empty
        );
    }

    #[test]
    fn the_json_form_of_earlier_versions_is_still_read() {
        let r = decode_schedule(
            "CEN.sched",
            br#"{"next":1796270400,"retry_at":1796274000,"basis":"every 1 days UTC"}"#,
        )
        .expect("decode");
        assert_eq!(r.next, Some(1_796_270_400));
        assert_eq!(r.retry_at, Some(1_796_274_000));
        assert_eq!(r.basis.as_deref(), Some("every 1 days UTC"));
        let r = decode_schedule("CEN.sched", br#"{"next":null,"retry_at":5}"#).expect("decode");
        assert_eq!((r.next, r.retry_at, r.basis), (None, Some(5), None));
    }

    #[test]
    fn garbage_is_an_error_naming_the_key() {
        let e = decode_schedule("CEN.sched", &[0xff, 0xff, 0xff]).expect_err("garbage");
        assert!(e.to_string().contains("CEN.sched"), "{e}");
    }
}
