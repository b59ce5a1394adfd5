//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386), as kube-apiserver applies them.

use serde_json::Value;

use crate::{Error, Result};

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`) to `doc`.
///
/// A patch that is not a list of operations is [`Error::BadPatch`] (400); an operation that
/// cannot be applied, including a failed `test`, is [`Error::PatchNotApplicable`] (422). The
/// patch applies atomically: on error nothing of it is kept.
pub fn json_patch(mut doc: Value, patch: &Value) -> Result<Value> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| Error::BadPatch(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(&mut doc, &ops).map_err(|e| Error::PatchNotApplicable(e.to_string()))?;
    Ok(doc)
}

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`) to `doc`.
///
/// Objects merge recursively, `null` deletes a field, anything else (lists included) replaces
/// the target; a patch that is not an object replaces the whole document.
pub fn merge_patch(mut doc: Value, patch: &Value) -> Value {
    json_patch::merge(&mut doc, patch);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_applies_operations_in_order() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]);
        let out = json_patch(doc, &patch).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}}));
    }

    #[test]
    fn json_patch_failed_test_is_unprocessable() {
        let doc = json!({"spec": {"replicas": 1}});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "test", "path": "/spec/replicas", "value": 2}
        ]);
        let err = json_patch(doc, &patch).unwrap_err();
        assert_eq!(err.http_status(), 422);
        assert!(err.to_string().contains("value did not match"), "{err}");
    }

    #[test]
    fn json_patch_that_is_not_a_list_is_a_bad_request() {
        let err = json_patch(json!({}), &json!({"op": "add"})).unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().starts_with("invalid JSON patch"), "{err}");
    }

    #[test]
    fn json_patch_removing_a_missing_path_is_unprocessable() {
        let err = json_patch(json!({"a": 1}), &json!([{"op": "remove", "path": "/b"}])).unwrap_err();
        assert_eq!(err.http_status(), 422);
    }

    #[test]
    fn json_patch_appends_with_dash_index() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "b"}]);
        let out = json_patch(doc, &patch).unwrap();
        assert_eq!(out, json!({"metadata": {"finalizers": ["a", "b"]}}));
    }

    #[test]
    fn merge_patch_merges_objects_and_replaces_lists() {
        let doc = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        });
        let patch = json!({
            "metadata": {"labels": {"a": null, "c": "3"}},
            "spec": {"containers": [{"name": "c"}]}
        });
        let out = merge_patch(doc, &patch);
        assert_eq!(
            out,
            json!({
                "metadata": {"labels": {"b": "2", "c": "3"}},
                "spec": {"containers": [{"name": "c"}]}
            })
        );
    }

    #[test]
    fn merge_patch_creates_missing_parents() {
        let out = merge_patch(json!({}), &json!({"metadata": {"annotations": {"x": "y"}}}));
        assert_eq!(out, json!({"metadata": {"annotations": {"x": "y"}}}));
    }
}
