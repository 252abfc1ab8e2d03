//! Does rewiring help this model train? Paired training runs over seeds.
//!
//! For each seed, every arm (the original initialization, the rewired one,
//! and any variants) trains under identical conditions: the same data
//! order, augmentation, dropout masks, optimizer and schedule. Only the
//! initial weights differ, so the difference in each metric is paired by
//! seed and tested as such.

pub(crate) mod plot;
pub(crate) mod stats;
