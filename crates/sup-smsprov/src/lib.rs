//! The ConfigMgr 2007 site control file as the SMS Provider (WMI namespace `root\sms\site_<CODE>`)
//! exposes it, limited to what the software update point procedure touches, and a pure mapping
//! between it and the validated site model.
//!
//! - [`scf`]: the items: `SMS_SCI_SysResUse` rows ("SMS Site System", "SMS Software Update
//!   Point"), the `SMS_WSUS_CONFIGURATION_MANAGER` and `SMS_WSUS_SYNC_MANAGER` components
//!   (`SMS_SCI_Component`), category subscriptions (`SMS_UpdateCategoryInstance.IsSubscribed`),
//!   each setting an `SMS_EmbeddedProperty`.
//! - [`map`]: a site (and what its active SUP synchronizes from) to those items, and back, for
//!   import and drift.
//! - [`session`]: the session / refresh / change / commit / release sequence of an edit.
//! - [`wmi`]: the items as WMI instances of the provider's classes, with their keys.
//! - [`live`]: reading a site from its provider through a `sup-wsman` client.
//! - [`import`]: a site file for a live site, completed by its applied declaration.
//! - [`drift`]: how a live site differs from its declaration, field by field.
//!
//! Property names and value slots come from the ConfigMgr SDK and public scripts; where a source
//! names a property only for later versions, or none was found for 2007, the item says so and the
//! mapping leaves the setting out rather than guess (the README's "real sites" notes list them).
//!
//! **Architecture invariant:** no IO of its own: [`live`] reads only through a `sup-wsman`
//! client, and everything else is pure.

pub mod drift;
pub mod import;
pub mod live;
pub mod map;
pub mod scf;
pub mod session;
pub mod wmi;
