//! The store conformance suite on [`MemStore`].

use corten_store::{MemStore, MemStoreConfig};

corten_store::conformance_tests!(async { MemStore::new(MemStoreConfig::default()) });
