//! Printers of the storage kinds: volumes and claims, storage classes and the CSI objects.

use serde_json::{json, Value};

use super::{boolean, flag, get, int, items, name, quantity, s, strings, text, Clock, Column, AGE, NAME};

/// The annotation that overrides `storageClassName` on volumes and claims.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) const PV: &[Column] = &[
    NAME,
    text("Capacity", "The size of the volume."),
    text("Access Modes", "How the volume can be mounted."),
    text("Reclaim Policy", "What happens to the volume when its claim is released."),
    text("Status", "The phase of the volume."),
    text("Claim", "The claim bound to the volume."),
    text("StorageClass", "The storage class of the volume."),
    text("VolumeAttributesClass", "The volume attributes class of the volume."),
    text("Reason", "Why the volume is in its phase."),
    AGE,
    text("VolumeMode", "Whether the volume is a filesystem or a block device.").wide(),
];

pub(super) const PVC: &[Column] = &[
    NAME,
    text("Status", "The phase of the claim."),
    text("Volume", "The volume bound to the claim."),
    text("Capacity", "The size of the bound volume."),
    text("Access Modes", "How the bound volume can be mounted."),
    text("StorageClass", "The storage class of the claim."),
    text("VolumeAttributesClass", "The volume attributes class of the claim."),
    AGE,
    text("VolumeMode", "Whether the claim asks for a filesystem or a block device.").wide(),
];

pub(super) const STORAGE_CLASS: &[Column] = &[
    NAME,
    text("Provisioner", "The provisioner of the class's volumes."),
    text("ReclaimPolicy", "The reclaim policy of the class's volumes."),
    text("VolumeBindingMode", "When claims of the class are bound."),
    text("AllowVolumeExpansion", "Whether claims of the class can grow."),
    AGE,
];

pub(super) const CSI_DRIVER: &[Column] = &[
    NAME,
    boolean("AttachRequired", "Whether volumes must be attached before mounting."),
    boolean("PodInfoOnMount", "Whether mounts receive pod information."),
    boolean("StorageCapacity", "Whether the driver reports storage capacity."),
    text("TokenRequests", "Audiences of the service account tokens passed on mount."),
    boolean("RequiresRepublish", "Whether volumes are republished periodically."),
    text("Modes", "The volume lifecycle modes the driver supports."),
    AGE,
];

pub(super) const CSI_NODE: &[Column] = &[NAME, int("Drivers", "CSI drivers registered on the node."), AGE];

pub(super) const CSI_STORAGE_CAPACITY: &[Column] = &[
    NAME,
    text("StorageClassName", "The storage class the capacity is for."),
    text("Capacity", "The capacity available."),
];

pub(super) const VOLUME_ATTACHMENT: &[Column] = &[
    NAME,
    Column { format: "name", ..text("Attacher", "The driver attaching the volume.") },
    text("PV", "The volume being attached."),
    text("Node", "The node the volume is attached to."),
    boolean("Attached", "Whether the volume is attached."),
    AGE,
];

/// Access modes in their short forms (`RWO,ROX,RWX,RWOP`), in that fixed order, once each.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a volume or claim: the beta annotation when present, else the field.
fn class_of(o: &Value) -> &str {
    match o.pointer("/metadata/annotations").and_then(|a| a.get(BETA_STORAGE_CLASS)) {
        Some(class) => class.as_str().unwrap_or(""),
        None => s(o, "/spec/storageClassName"),
    }
}

/// The phase, or `Terminating` once deletion started.
fn phase(o: &Value) -> &str {
    if get(o, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(o, "/status/phase")
    }
}

/// An optional string field, `<unset>` when absent.
fn or_unset<'a>(o: &'a Value, pointer: &str) -> &'a str {
    get(o, pointer).and_then(Value::as_str).unwrap_or("<unset>")
}

/// A storage quantity, `0` (the zero quantity) when absent.
fn storage(o: &Value, pointer: &str) -> String {
    get(o, pointer).map_or_else(|| "0".into(), quantity)
}

pub(super) fn persistent_volume(o: &Value, clock: &Clock) -> Vec<Value> {
    let claim = get(o, "/spec/claimRef")
        .map_or_else(String::new, |c| format!("{}/{}", s(c, "/namespace"), s(c, "/name")));
    vec![
        name(o),
        json!(storage(o, "/spec/capacity/storage")),
        json!(access_modes(items(o, "/spec/accessModes"))),
        json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase(o)),
        json!(claim),
        json!(class_of(o)),
        json!(or_unset(o, "/spec/volumeAttributesClassName")),
        json!(s(o, "/status/reason")),
        clock.age(o),
        json!(or_unset(o, "/spec/volumeMode")),
    ]
}

pub(super) fn persistent_volume_claim(o: &Value, clock: &Clock) -> Vec<Value> {
    let volume = s(o, "/spec/volumeName");
    // capacity and access modes are those of the bound volume, blank until bound
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (storage(o, "/status/capacity/storage"), access_modes(items(o, "/status/accessModes")))
    };
    vec![
        name(o),
        json!(phase(o)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class_of(o)),
        json!(or_unset(o, "/spec/volumeAttributesClassName")),
        clock.age(o),
        json!(or_unset(o, "/spec/volumeMode")),
    ]
}

pub(super) fn storage_class(o: &Value, clock: &Clock) -> Vec<Value> {
    let annotations = o.pointer("/metadata/annotations");
    let default =
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"));
    let mut display = s(o, "/metadata/name").to_string();
    if default {
        display.push_str(" (default)");
    }
    vec![
        json!(display),
        json!(s(o, "/provisioner")),
        json!(get(o, "/reclaimPolicy").and_then(Value::as_str).unwrap_or("Delete")),
        json!(get(o, "/volumeBindingMode").and_then(Value::as_str).unwrap_or("Immediate")),
        json!(flag(o, "/allowVolumeExpansion")),
        clock.age(o),
    ]
}

pub(super) fn csi_driver(o: &Value, clock: &Clock) -> Vec<Value> {
    let attach_required = get(o, "/spec/attachRequired").and_then(Value::as_bool).unwrap_or(true);
    let tokens = get(o, "/spec/tokenRequests").map_or_else(
        || "<unset>".to_string(),
        |t| t.as_array().into_iter().flatten().map(|r| s(r, "/audience")).collect::<Vec<_>>().join(","),
    );
    let modes = strings(o, "/spec/volumeLifecycleModes").join(",");
    vec![
        name(o),
        json!(attach_required),
        json!(flag(o, "/spec/podInfoOnMount")),
        json!(flag(o, "/spec/storageCapacity")),
        json!(tokens),
        json!(flag(o, "/spec/requiresRepublish")),
        json!(if modes.is_empty() { "<none>".into() } else { modes }),
        clock.age(o),
    ]
}

pub(super) fn csi_node(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(items(o, "/spec/drivers").len()), clock.age(o)]
}

pub(super) fn csi_storage_capacity(o: &Value, _: &Clock) -> Vec<Value> {
    let capacity = get(o, "/capacity").map_or_else(|| "<unset>".into(), quantity);
    vec![name(o), json!(s(o, "/storageClassName")), json!(capacity)]
}

pub(super) fn volume_attachment(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![
        name(o),
        json!(s(o, "/spec/attacher")),
        json!(s(o, "/spec/source/persistentVolumeName")),
        json!(s(o, "/spec/nodeName")),
        json!(flag(o, "/status/attached")),
        clock.age(o),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::test_clock;
    use super::*;

    #[test]
    fn access_modes_print_short_forms_in_a_fixed_order_once() {
        let modes =
            json!(["ReadWriteOncePod", "ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany", "ReadWriteOnce"]);
        assert_eq!(access_modes(modes.as_array().map_or(&[], Vec::as_slice)), "RWO,ROX,RWX,RWOP");
        assert_eq!(access_modes(&[json!("ReadOnlyMany")]), "ROX");
        assert_eq!(access_modes(&[]), "");
    }

    #[test]
    fn bound_claim_shows_volume_capacity_and_modes() {
        let pvc = json!({"metadata": {"name": "data"},
            "spec": {"volumeName": "pv-1", "storageClassName": "local-path", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            persistent_volume_claim(&pvc, &test_clock()),
            vec![
                json!("data"),
                json!("Bound"),
                json!("pv-1"),
                json!("2Gi"),
                json!("RWO"),
                json!("local-path"),
                json!("<unset>"),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
    }

    #[test]
    fn pending_claim_leaves_capacity_and_modes_blank() {
        let pvc = json!({"metadata": {"name": "data", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"storageClassName": "new", "accessModes": ["ReadWriteOnce"], "volumeAttributesClassName": "gold"},
            "status": {"phase": "Pending"}});
        assert_eq!(
            persistent_volume_claim(&pvc, &test_clock())[1..7],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("old"), json!("gold")]
        );
        let mut deleting = pvc.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(persistent_volume_claim(&deleting, &test_clock())[1], "Terminating");
    }

    #[test]
    fn volume_shows_claim_policy_and_class() {
        let pv = json!({"metadata": {"name": "pv-1"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Retain",
                     "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "nfs"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistent_volume(&pv, &test_clock())[1..9],
            [
                json!("10Gi"),
                json!("RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("nfs"),
                json!("<unset>"),
                json!("")
            ]
        );
        let bare = json!({"metadata": {"name": "pv-2"}, "spec": {}, "status": {"phase": "Failed", "reason": "Recycle failed"}});
        let cells = persistent_volume(&bare, &test_clock());
        assert_eq!(cells[1], "0");
        assert_eq!(cells[5..9], [json!(""), json!(""), json!("<unset>"), json!("Recycle failed")]);
        assert_eq!(cells[10], "<unset>");
    }

    #[test]
    fn default_storage_class_is_marked_after_its_name() {
        let sc = |annotations: Value| {
            storage_class(
                &json!({"metadata": {"name": "local-path", "annotations": annotations}, "provisioner": "rancher.io/local-path"}),
                &test_clock(),
            )
        };
        assert_eq!(
            sc(json!({"storageclass.kubernetes.io/is-default-class": "true"}))[..5],
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
        assert_eq!(
            sc(json!({"storageclass.beta.kubernetes.io/is-default-class": "true"}))[0],
            "local-path (default)"
        );
        assert_eq!(sc(json!({"storageclass.kubernetes.io/is-default-class": "false"}))[0], "local-path");
        let custom = json!({"metadata": {"name": "fast"}, "provisioner": "p", "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
        assert_eq!(
            storage_class(&custom, &test_clock())[2..5],
            [json!("Retain"), json!("WaitForFirstConsumer"), json!(true)]
        );
    }

    #[test]
    fn csi_objects_print_their_defaults() {
        let driver = json!({"metadata": {"name": "d"}, "spec": {}});
        assert_eq!(
            csi_driver(&driver, &test_clock())[1..7],
            [json!(true), json!(false), json!(false), json!("<unset>"), json!(false), json!("<none>")]
        );
        let driver = json!({"metadata": {"name": "d"}, "spec": {"attachRequired": false, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
            "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            csi_driver(&driver, &test_clock())[4..7],
            [json!("a,b"), json!(false), json!("Persistent,Ephemeral")]
        );
        let node = json!({"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "d"}]}});
        assert_eq!(csi_node(&node, &test_clock())[1], 1);
        let cap = json!({"metadata": {"name": "c"}, "storageClassName": "fast"});
        assert_eq!(
            csi_storage_capacity(&cap, &test_clock()),
            vec![json!("c"), json!("fast"), json!("<unset>")]
        );
        let va = json!({"metadata": {"name": "csi-1"}, "spec": {"attacher": "d", "nodeName": "n1", "source": {"persistentVolumeName": "pv"}},
            "status": {"attached": true}});
        assert_eq!(
            volume_attachment(&va, &test_clock())[1..5],
            [json!("d"), json!("pv"), json!("n1"), json!(true)]
        );
    }
}
