//! The shared Kubernetes model: pieces every layer speaks (quantities, CIDRs, label
//! and field selectors with the label validators, the version constants, the join
//! wire types, cron schedules and time zones). It sits below `api`, `client`, `controllers`, `scheduler` and `agent`
//! so they share these without naming each other (docs/adr/0010-layering.md).
//!
//! May call: nothing else in skiff.

pub mod cidr;
pub mod cron;
pub mod join;
pub mod node_labels;
pub mod quantity;
pub mod quote;
pub mod selector;
pub mod tz;
pub mod version;
