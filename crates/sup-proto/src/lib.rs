//! Generated protobuf messages and gRPC stubs for `sup.v1`: the public API, every event and
//! command payload, and the site-system agent protocol. This is the only crate that knows protobuf
//! code generation; everything else uses these types.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sup.v1");
}

/// Encoded file descriptor set of `sup.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sup_descriptor");

/// The largest gRPC message the services and their clients take or send. gRPC's default of
/// 4 MiB holds one `ApplySites` of about 7,000 sites (and their `GetStatus`); this bound holds
/// the site files and hierarchies of tens of thousands of sites in one request.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub mod cloudevent;
pub mod convert;
pub mod kind;

pub use prost;
pub use prost_types;
