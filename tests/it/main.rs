//! The integration tests: one binary, a module per stage of the data flow.

mod algorithm;
mod backend;
mod cli;
mod exporters;
mod fixtures;
mod hostile;
mod locate;
pub mod roundtrip;
mod train;
mod train_rules;
