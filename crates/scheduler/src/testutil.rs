//! Object builders for unit tests.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A node named `name` with roomy allocatable, merged with `extra`.
pub fn node(name: &str, extra: Value) -> Node {
    let mut v = json!({"metadata": {"name": name, "uid": format!("uid-{name}"),
        "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
    merge(&mut v, extra);
    serde_json::from_value(v).expect("a node")
}

/// A pod `default/name` with one container, merged with `extra`.
pub fn pod(name: &str, extra: Value) -> Pod {
    let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    merge(&mut v, extra);
    serde_json::from_value(v).expect("a pod")
}
