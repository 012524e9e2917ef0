//! The report's wire shape, from the `electric-telemetry-report` crate (`report/` in the
//! workspace): the envelope and the seed's payload, field for field, the frozen schemas and
//! the versioning rules (see that crate's docs). Re-exported here and at the crate root.

pub use electric_telemetry_report::{
    Environment, Level, Os, Report, ReportData, Resources, REPORT_SCHEMA, REPORT_VERSION,
};
