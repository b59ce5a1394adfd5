//! Conversions between the forms of resources that share one storage: pure functions on JSON
//! objects, looked up through [`crate::registry::SharedStorage`].

pub mod events;
