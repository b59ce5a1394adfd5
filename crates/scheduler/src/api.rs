//! What the scheduler writes through the API: bindings, the `PodScheduled` condition, events
//! (core/v1, which `kubectl describe` lists) and preemption's deletions and nominations.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use kube::Result;

fn api(client: &Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"))
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Binds `pod` to `node` with a `pods/binding` (the API server sets `spec.nodeName` and the
/// `PodScheduled=True` condition).
pub async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<()> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let _: Value =
        api(client, pod).create_subresource("binding", name(pod), &PostParams::default(), &binding).await?;
    Ok(())
}

/// Sets `PodScheduled=False` (reason `Unschedulable`) with `message`, and the nominated node
/// when preemption chose one; nothing is written when both are already so.
pub async fn mark_unschedulable(
    client: &Client,
    pod: &Pod,
    message: &str,
    nominated: Option<&str>,
) -> Result<()> {
    let status = pod.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_ == "PodScheduled");
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let nominated_now = status.and_then(|s| s.nominated_node_name.as_deref());
    if same && (nominated.is_none() || nominated == nominated_now) {
        return Ok(());
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => None,
    }
    .unwrap_or_else(|| Time(jiff::Timestamp::now()));
    // A strategic merge patch replaces only this condition (merge key `type`).
    let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": transition});
    let mut patch = json!({"status": {"conditions": [condition]}});
    if let Some(n) = nominated {
        patch["status"]["nominatedNodeName"] = json!(n);
    }
    api(client, pod).patch_status(name(pod), &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// Marks a preemption victim with `DisruptionTarget=True` (reason `PreemptionByScheduler`, as
/// upstream) and deletes it (only the pod with the victim's uid).
pub async fn evict(client: &Client, victim: &Pod, scheduler: &str) -> Result<()> {
    let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
        "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": Time(jiff::Timestamp::now())});
    let patch = json!({"status": {"conditions": [condition]}});
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: victim.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api = api(client, victim);
    let result =
        match api.patch_status(name(victim), &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => api.delete(name(victim), &dp).await.map(|_| ()),
            Err(e) => Err(e),
        };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes core/v1 events about pods, folding a repeat of the last event of a pod into its count.
#[derive(Debug)]
pub struct Recorder {
    /// The component events come from (the scheduler's name).
    component: String,
    /// The last event of each pod key: its name, reason, message and count.
    last: HashMap<String, (String, String, String, i32)>,
}

impl Recorder {
    /// A recorder for events from `component`.
    pub fn new(component: &str) -> Recorder {
        Recorder { component: component.to_string(), last: HashMap::new() }
    }

    /// Records an event of `type_` (`Normal`, `Warning`) with `reason` and `message` about `pod`.
    pub async fn record(
        &mut self,
        client: &Client,
        pod: &Pod,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{ns}/{}", name(pod));
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let now = Time(jiff::Timestamp::now());
        if let Some((ev, r, m, count)) = self.last.get_mut(&key) {
            if r == reason && m == message {
                *count += 1;
                let patch = json!({"count": *count, "lastTimestamp": now});
                match events.patch(ev, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let event_name = format!("{}.{:x}", name(pod), jiff::Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(ns),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..ObjectReference::default()
            },
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            message: Some(message.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Event::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.last.insert(key, (event_name, reason.into(), message.into(), 1));
        Ok(())
    }

    /// Forgets the pods `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.last.retain(|k, _| keep(k));
    }
}
