//! The SUP domain, pure: the site file and every rule of the ConfigMgr 2007 procedure for
//! creating and configuring software update points, the WSUS 3.0 catalogs, synchronization
//! schedules, the role lifecycle and the one-active-SUP invariant.
//!
//! **Architecture invariant:** no IO, no async, no knowledge of NATS, gRPC or protobuf. Everything
//! here is a function of its arguments, so it is tested exhaustively with properties.
//!
//! - [`spec`]: the site file, parsed and validated into [`model`] types; violations name the
//!   field path and the rule ([`error`]).
//! - [`changes`]: what an apply changes in a site, in words.
//! - [`catalog`]: classifications, products and languages with their WSUS identifiers.
//! - [`schedule`]: sync schedules and the next-fire function.
//! - [`lifecycle`]: the role state machine.
//! - [`slots`]: who may take an active slot.
//! - [`hierarchy`]: parents before children.
//! - [`failover`]: when an `auto` site's slot moves, and to which targets first.
//! - [`token`]: ConfigMgr's 16-hex-digit schedule tokens, decoded and encoded.
//! - [`wsus_version`]: which WSUS versions a ConfigMgr 2007 SUP accepts.

pub mod catalog;
pub mod changes;
pub mod error;
pub mod failover;
pub mod hierarchy;
pub mod lifecycle;
pub mod model;
pub mod names;
pub mod schedule;
pub mod slots;
pub mod spec;
pub mod token;
pub mod wsus_version;

#[cfg(test)]
mod slots_tests;
#[cfg(test)]
mod spec_tests;

pub use error::{Violation, Violations};
pub use lifecycle::{RoleEvent, RoleState};
pub use model::{Site, SiteMode, SlotKind, SlotTarget};
