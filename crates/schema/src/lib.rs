//! The Kubernetes v1.33 type schema and everything the API server computes from it.
//!
//! [`Schema`] is a value holding named type definitions; [`Schema::builtin`] is the instance for
//! the built-in API (embedded, inflated once on first use), and CustomResourceDefinition schemas
//! are added to a clone of it at run time ([`Schema::add_definitions`]). [`TypeRef`] walks a
//! definition: properties, list items, map values, and the `x-kubernetes-*` metadata that drives
//! patching and server-side apply.
//!
//! Computed from it:
//! - patches over `serde_json::Value`: [`json_patch()`] (RFC 6902), [`merge_patch`] (RFC 7386) and
//!   [`strategic_merge_patch`] (the Kubernetes strategic merge patch kubectl sends);
//! - field validation for `fieldValidation=Strict|Warn`: [`unknown_fields`], [`duplicate_fields`];
//! - server-side apply and field ownership (`metadata.managedFields`): [`FieldManager`] applies
//!   configurations with conflict detection and records other writes, over [`FieldSet`]s in the
//!   `FieldsV1` encoding;
//! - request bodies in Kubernetes protobuf (what client-go's typed clients send) to JSON:
//!   [`decode_protobuf`], driven by embedded descriptors of every v1.33 message;
//! - resource quantities ([`quantity`]): exact parsing, arithmetic and canonical printing, and
//!   what pods and other objects use of them ([`resources`]: pod totals, quota usage, scopes);
//! - OpenAPI documents for kubectl and clients: [`openapi_v2`], [`openapi_v3_index`],
//!   [`openapi_v3`] (and byte-streaming variants for caching).
//!
//! This crate is pure computation: it must not depend on the HTTP server, the store, tokio or
//! any I/O, so that it compiles and tests on its own.

mod data;
mod fieldpath;
mod openapi;
mod parse;
mod patch;
mod protobuf;
pub mod quantity;
pub mod resources;
mod schema;
mod smp;
mod ssa;
mod ssa_typed;
mod validate;

pub use fieldpath::{FieldPath, FieldSet, FieldsV1Error, PathElement};
pub use openapi::{
    content_hash, openapi_v2, openapi_v2_bytes, openapi_v3, openapi_v3_bytes, openapi_v3_index,
    ServedResource,
};
pub use patch::{json_patch, merge_patch};
pub use protobuf::{decode_protobuf, protobuf_decodes, ProtobufError, PROTOBUF_CONTENT_TYPE};
pub use schema::{Gvk, Kind, ListType, MapType, PatchStrategy, ScalarType, Schema, TypeRef};
pub use smp::strategic_merge_patch;
pub use ssa::{
    field_set, field_set_of, ApplyError, Conflict, Conflicts, FieldManager, ManagedFields,
    ManagedFieldsEntry, ManagedFieldsError, Operation, ANCIENT_CHANGES, BEFORE_FIRST_APPLY,
};
pub use validate::{duplicate_fields, unknown_fields};

/// What can go wrong loading schemas or applying patches.
///
/// Patch errors carry the message the API server puts into its `Status`;
/// [`Error::http_status`] says which code kube-apiserver answers with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The embedded schema data could not be inflated or parsed (a build defect).
    #[error("embedded schema data is corrupt: {0}")]
    CorruptData(String),
    /// A schema definition that this crate cannot represent.
    #[error("invalid schema definition {name:?}: {reason}")]
    InvalidDefinition {
        /// The definition's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `$ref` naming a definition that does not exist.
    #[error("definition {from:?} refers to unknown definition {to:?}")]
    UnresolvedRef {
        /// The definition holding the reference.
        from: String,
        /// The name it refers to.
        to: String,
    },
    /// A patch document that is malformed (kube-apiserver answers 400 Bad Request).
    #[error("{0}")]
    BadPatch(String),
    /// A well-formed patch that cannot be applied to this object (422 Unprocessable Entity).
    #[error("{0}")]
    PatchNotApplicable(String),
    /// A patch that fails for another reason (kube-apiserver answers 500).
    #[error("{0}")]
    PatchFailed(String),
}

impl Error {
    /// The HTTP status kube-apiserver uses for this error in a `Status` response.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadPatch(_) => 400,
            Error::PatchNotApplicable(_) => 422,
            Error::CorruptData(_)
            | Error::InvalidDefinition { .. }
            | Error::UnresolvedRef { .. }
            | Error::PatchFailed(_) => 500,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
