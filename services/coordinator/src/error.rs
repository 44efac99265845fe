//! The coordinator's errors and their one mapping to gRPC status codes.

use sup_core::Violations;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request breaks rules; nothing was changed.
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system is not in a state that allows it.
    #[error("{0}")]
    Precondition(String),
    /// Another writer won the compare-and-set; retrying may succeed.
    #[error("{0}")]
    Aborted(String),
    /// Done, but not yet confirmed as the request promises; retrying (same op id) may succeed.
    #[error("{0}")]
    Unconfirmed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] sup_bus::BusError),
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::Invalid(v) => {
                let mut status = tonic::Status::invalid_argument(v.to_string());
                // One line per violation, machine-readable, for clients that want the parts.
                let lines: Vec<String> = v
                    .iter()
                    .map(|x| format!("{}\t{}\t{}", x.path, x.rule, x.message))
                    .collect();
                if let Ok(value) = lines.join("\n").replace(['\r', '\n'], " | ").parse() {
                    status.metadata_mut().insert("sup-violations", value);
                }
                status
            }
            ApiError::BadRequest(m) => tonic::Status::invalid_argument(m.clone()),
            ApiError::NotFound(m) => tonic::Status::not_found(m.clone()),
            ApiError::Precondition(m) => tonic::Status::failed_precondition(m.clone()),
            ApiError::Aborted(m) => tonic::Status::aborted(m.clone()),
            ApiError::Unconfirmed(m) => tonic::Status::unavailable(m.clone()),
            ApiError::Store(_) | ApiError::Bus(_) => tonic::Status::unavailable(e.to_string()),
        }
    }
}
