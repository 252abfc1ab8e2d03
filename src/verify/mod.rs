//! Proving that a candidate model is a permutation of an original: by
//! structure ([`structure`]) and by running both ([`inference`]).

pub mod inference;
pub mod structure;
