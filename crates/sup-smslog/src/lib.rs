//! ConfigMgr log files as the SUP procedure reads them: the three on-disk formats (SMS trace,
//! rolesetup, CMTrace), byte decoding (BOM sniffing, UTF-8 with a Windows-1252 fallback per
//! line), an incremental reader that follows a log across rotation to `.lo_` without losing or
//! repeating a line, and the milestones the procedure waits for.
//!
//! **Architecture invariant:** no NATS and no async here; nothing in this crate panics on any
//! input bytes.
//!
//! - [`parse`]: one line (or one CMTrace record) into a [`Record`].
//! - [`milestone`]: the milestone names (a contract) and the stateful [`Classifier`].
//! - [`decode`]: bytes to text.
//! - [`reader`]: [`LogReader`], following a file across rotation.
//! - [`scan`]: milestones straight from a buffer, parsing only the lines that can hold one.
//! - [`zone`]: the bias of a server whose lines carry no zone, from its file's last write.

pub mod decode;
pub mod milestone;
pub mod parse;
pub mod reader;
pub mod scan;
pub mod zone;

pub use milestone::{Classifier, Milestone, MilestoneKind};
pub use parse::{Format, Record, RecordRef, parse_line, parse_record};
pub use reader::{LineRef, LogReader, MilestoneLine, Position, RawLine};
pub use scan::{Found, scan_milestones};
