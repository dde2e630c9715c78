//! PLACEHOLDER: replaced by the config work.
