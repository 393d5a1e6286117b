//! The commands that are not a pass of the pipeline: [`check`] (`ferry
//! check`: connect to every component, one line each), [`fetch`] (`ferry
//! fetch`: one download, timed and hashed), and [`ops`] (the operations
//! commands over the ledger, printed as tables or JSON). [`crate::cli`]
//! parses the command line and calls them.

pub mod check;
pub mod fetch;
pub mod ops;
