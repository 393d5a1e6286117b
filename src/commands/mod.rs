//! The commands that are not a pass of the pipeline: [`check`] (`ferry
//! check`: connect to every component, one line each), [`fetch`] (`ferry
//! fetch`: one download, timed and hashed), [`ops`] (the operations
//! commands over the ledger, printed as tables or JSON), [`audit`]
//! (source, ledger, target and bucket reconciled) and [`replay`] (load
//! again from the raw archive). [`crate::cli`]
//! parses the command line and calls them.

pub mod audit;
pub mod check;
pub mod fetch;
pub mod ops;
pub mod replay;
