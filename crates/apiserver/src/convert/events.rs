//! `events.k8s.io/v1` Event <-> core/v1 Event, as kube-apiserver converts them (both are served
//! from the core Event storage; `k8s.io/kubernetes/pkg/apis/events/v1` conversion).
//!
//! Fields that exist in both forms under one name (`metadata`, `eventTime`, `series`, `action`,
//! `reason`, `type`, `related`, `reportingInstance`) are copied; the renamed ones follow
//! [`RENAMED`]. Zero values are left out, as Go's `omitempty` does.

use serde_json::{Map, Value};

/// Fields with the same name in both forms.
const SAME: &[&str] =
    &["metadata", "eventTime", "series", "action", "reason", "type", "related", "reportingInstance"];

/// core/v1 field and the events.k8s.io/v1 field it becomes.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("count", "deprecatedCount"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
];

/// An `events.k8s.io/v1` Event as a core/v1 Event (the stored form).
pub fn to_core(event: Value) -> Value {
    convert(event, "v1", RENAMED.iter().map(|(core, events)| (*events, *core)))
}

/// A core/v1 Event as an `events.k8s.io/v1` Event.
pub fn from_core(event: Value) -> Value {
    convert(event, "events.k8s.io/v1", RENAMED.iter().map(|(core, events)| (*core, *events)))
}

fn convert<'a>(event: Value, api_version: &str, renamed: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let Value::Object(mut from) = event else { return event };
    let mut to = Map::new();
    to.insert("kind".into(), "Event".into());
    to.insert("apiVersion".into(), api_version.into());
    let fields = SAME.iter().map(|f| (*f, *f)).chain(renamed);
    for (src, dst) in fields {
        match from.remove(src) {
            Some(v) if !is_zero(&v) => {
                to.insert(dst.into(), v);
            }
            _ => {}
        }
    }
    Value::Object(to)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Object(m) => m.is_empty(),
        Value::Bool(_) | Value::Array(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn events_v1() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "uid": "u1"},
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "series": {"count": 3, "lastObservedTime": "2026-01-02T03:05:05.000000Z"},
            "reportingController": "deployment-controller",
            "reportingInstance": "corten-1",
            "action": "Scaling",
            "reason": "ScalingReplicaSet",
            "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default", "uid": "d1"},
            "related": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "namespace": "default"},
            "note": "Scaled up replica set web-abc from 0 to 2",
            "type": "Normal",
            "deprecatedSource": {"component": "deployment-controller", "host": "n1"},
            "deprecatedFirstTimestamp": "2026-01-02T03:04:05Z",
            "deprecatedLastTimestamp": "2026-01-02T03:05:05Z",
            "deprecatedCount": 3,
        })
    }

    #[test]
    fn an_events_v1_event_becomes_the_core_event_upstream_stores() {
        let core = to_core(events_v1());
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "web.1", "namespace": "default", "uid": "u1"},
                "eventTime": "2026-01-02T03:04:05.123456Z",
                "series": {"count": 3, "lastObservedTime": "2026-01-02T03:05:05.000000Z"},
                "reportingComponent": "deployment-controller",
                "reportingInstance": "corten-1",
                "action": "Scaling",
                "reason": "ScalingReplicaSet",
                "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default", "uid": "d1"},
                "related": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "namespace": "default"},
                "message": "Scaled up replica set web-abc from 0 to 2",
                "type": "Normal",
                "source": {"component": "deployment-controller", "host": "n1"},
                "firstTimestamp": "2026-01-02T03:04:05Z",
                "lastTimestamp": "2026-01-02T03:05:05Z",
                "count": 3,
            })
        );
    }

    #[test]
    fn converting_there_and_back_keeps_every_field() {
        assert_eq!(from_core(to_core(events_v1())), events_v1());
    }

    #[test]
    fn a_core_event_reads_as_events_v1_without_its_zero_values() {
        let core = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Scheduled",
            "message": "Successfully assigned default/p to n1",
            "source": {"component": "default-scheduler"},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "eventTime": "2026-01-02T03:04:05.000000Z",
            "reportingComponent": "",
            "reportingInstance": "",
            "count": 0,
            "type": "Normal",
        });
        assert_eq!(
            from_core(core),
            json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "p.1", "namespace": "default"},
                "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Scheduled",
                "note": "Successfully assigned default/p to n1",
                "deprecatedSource": {"component": "default-scheduler"},
                "eventTime": "2026-01-02T03:04:05.000000Z",
                "type": "Normal",
            })
        );
    }
}
