//! (being written)

pub mod physiology;
pub mod scenario;
