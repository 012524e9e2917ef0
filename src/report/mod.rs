//! The report: its wire shape and schema, and how a window's figures become one (host facts,
//! ids, version, clock).

pub(crate) mod builder;
pub(crate) mod host;
pub(crate) mod identity;
pub(crate) mod sent_fields;
pub(crate) mod wire;
