//! PATCH bodies: JSON Patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! (merge keys and directives from the v1.33 schema) and server-side apply.
//!
//! Server-side apply ([`server_side_apply`]) merges the applied configuration into the live
//! object with field ownership (`metadata.managedFields`): fields the manager stopped applying
//! are removed, fields other managers own are conflicts (409 with `FieldManagerConflict`
//! causes) unless `force=true`. Through a subresource (`/status`, `/scale`) an apply is still a
//! plain merge of the configuration, recorded as an `Update`.

use corten_schema::{ApplyError, FieldManager, ManagedFields};
use serde_json::Value;

use crate::codec;
use crate::error::{ApiError, Cause, Result};
use crate::registry::ResourceInfo;
use crate::request::Query;

/// A decoded PATCH body.
#[derive(Debug, Clone)]
pub enum Patch {
    Json(Value),
    Merge(Value),
    Strategic(Value),
    Apply(Value),
}

impl Patch {
    pub fn decode(content_type: &str, body: &[u8], q: &Query) -> Result<Patch> {
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let value = || codec::decode_body(&media, body);
        match media.as_str() {
            "application/json-patch+json" => {
                let ops = value()?;
                if !ops.is_array() {
                    return Err(ApiError::BadRequest(
                        "the JSON patch must be an array of operations, e.g. [{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":2}]".into(),
                    ));
                }
                Ok(Patch::Json(ops))
            }
            "application/merge-patch+json" => Ok(Patch::Merge(object(value()?)?)),
            "application/strategic-merge-patch+json" => Ok(Patch::Strategic(object(value()?)?)),
            "application/apply-patch+yaml" => {
                if q.field_manager.is_none() {
                    return Err(ApiError::BadRequest(
                        "PATCH, application/apply-patch+yaml requires fieldManager to be set".into(),
                    ));
                }
                Ok(Patch::Apply(object(value()?)?))
            }
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ))),
        }
    }

    /// The patched version of `current` (an empty object when creating through apply).
    pub fn apply(&self, info: &ResourceInfo, current: &Value) -> Result<Value> {
        let bad = |e: String| ApiError::BadRequest(format!("the patch could not be applied: {e}"));
        match self {
            Patch::Json(ops) => {
                corten_schema::json_patch(current.clone(), ops).map_err(|e| bad(e.to_string()))
            }
            Patch::Merge(p) => Ok(corten_schema::merge_patch(current.clone(), p)),
            Patch::Strategic(p) => {
                let ty = crate::schema::type_of(info).ok_or_else(|| {
                    ApiError::UnsupportedMediaType(format!(
                        "strategic merge patch is not supported for {}; use a JSON merge patch or a JSON patch",
                        info.qualified()
                    ))
                })?;
                corten_schema::strategic_merge_patch(current.clone(), p.clone(), ty)
                    .map_err(|e| bad(e.to_string()))
            }
            Patch::Apply(config) => match crate::schema::type_of(info) {
                Some(ty) => corten_schema::strategic_merge_patch(current.clone(), config.clone(), ty)
                    .map_err(|e| bad(e.to_string())),
                None => Ok(corten_schema::merge_patch(current.clone(), config)),
            },
        }
    }
}

/// Applies `config` (an applied configuration, `application/apply-patch+yaml`) for `manager` to
/// `live` (`{}`-like when creating), as kube-apiserver's field manager does; returns the new
/// object with its `managedFields`.
pub fn server_side_apply(
    info: &ResourceInfo,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    time: &str,
) -> Result<Value> {
    let api_version = info.api_version();
    match config.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == api_version => {}
        other => {
            return Err(ApiError::BadRequest(format!(
                "Incorrect version specified in apply patch. Specified patch version: {}, expected: {api_version}",
                other.unwrap_or("")
            )))
        }
    }
    let fm = FieldManager {
        ty: crate::schema::type_of(info),
        manager,
        subresource: None,
        api_version: &api_version,
        time,
        ignored: crate::admission::ignored_fields(info, false),
    };
    let managed = ManagedFields::from_object(live).unwrap_or_default();
    let (mut obj, managed) = fm.apply(live, config, managed, force).map_err(|e| match e {
        ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: conflicts.to_string(),
            causes: conflicts
                .0
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict",
                    field: c.field(),
                    message: c.cause_message(),
                })
                .collect(),
        },
        ApplyError::ManagedFieldsInConfig => ApiError::BadRequest(e.to_string()),
        ApplyError::InvalidConfig(detail) => {
            let name = crate::meta::name_of(config);
            let target = match crate::meta::meta_str(live, "namespace")
                .or(crate::meta::meta_str(config, "namespace"))
            {
                Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
                _ => name.to_string(),
            };
            ApiError::BadRequest(format!(
                "failed to create typed patch object ({target}; {api_version}, Kind={}): {detail}",
                info.kind
            ))
        }
    })?;
    managed.write_to(&mut obj);
    Ok(obj)
}

fn object(v: Value) -> Result<Value> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::BadRequest("the patch must be a JSON object".into()))
    }
}
