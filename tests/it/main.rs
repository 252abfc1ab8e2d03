//! The integration tests: one binary, a module per stage of the data flow.

mod algorithm;
mod cli;
mod fixtures;
mod locate;
mod roundtrip;
