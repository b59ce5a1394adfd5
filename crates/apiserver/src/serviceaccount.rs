//! The ServiceAccount admission plugin (kube-apiserver's `ServiceAccount`), on pod create: the
//! pod runs as `spec.serviceAccountName` (default `default`), and unless the pod or its service
//! account opts out with `automountServiceAccountToken: false`, it gets the
//! `kube-api-access-<random>` projected volume (a bound token, the cluster CA and the namespace)
//! mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in every container that
//! does not mount something there already. Pods without image pull secrets get the service
//! account's. Mirror pods are left alone.
//!
//! One deliberate difference: kube-apiserver forbids a pod whose service account does not exist
//! (`error looking up service account ns/name`). Corten admits it with the name defaulted and
//! nothing injected, because the service account controller creates `default` only moments after
//! a namespace, and clients (and tests without controllers) create pods in between.

use corten_store::Store;
use serde_json::{json, Value};

use crate::error::Result;
use crate::registry::ResourceInfo;
use crate::{meta, objects, Shared};

/// The service account of pods that name none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The prefix of the injected volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Where containers find the token, CA and namespace.
const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The annotation of mirror (static) pods.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The injected token's requested lifetime: kube-apiserver's "warn only" bound-token expiry.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// Admits a new pod (other kinds pass unchanged).
pub(crate) async fn admit_create<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    pod: &mut Value,
) -> Result<()> {
    if !(info.group.is_empty() && info.kind == "Pod") || is_mirror_pod(pod) {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let named = spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty());
    // The deprecated `serviceAccount` stands in for a missing `serviceAccountName`.
    let name = named
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let namespace = meta::meta_str(pod, "namespace").unwrap_or("").to_string();
    let Some(sa_info) = shared.registry.get("", "v1", "serviceaccounts") else { return Ok(()) };
    let Some((account, _)) =
        objects::get(&shared.store, sa_info, &sa_info.key(&namespace, &name), false).await?
    else {
        // See the module docs: kube-apiserver would refuse the pod here.
        return Ok(());
    };
    inject(pod, &account, &meta::random_suffix());
    Ok(())
}

fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// The pod's `automountServiceAccountToken` wins; else the service account's; else true.
fn should_automount(pod: &Value, account: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true)
}

/// The token volume kube-apiserver adds (`TokenVolumeSource`).
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
                ]}},
            ],
        },
    })
}

/// Mounts the token volume (reusing one already named `kube-api-access-*`, else
/// `kube-api-access-<suffix>`) and copies the image pull secrets.
fn inject(pod: &mut Value, account: &Value, suffix: &str) {
    let automount = should_automount(pod, account);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if automount {
        let existing = spec
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(String::from);
        let volume_name = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
        let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
        let mut mounted = false;
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                if mounts.is_null() {
                    *mounts = json!([]);
                }
                let Some(mounts) = mounts.as_array_mut() else { continue };
                if !mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH)) {
                    mounts.push(mount.clone());
                    mounted = true;
                }
            }
        }
        if mounted && existing.is_none() {
            let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
            if !volumes.is_array() {
                *volumes = json!([]);
            }
            if let Some(volumes) = volumes.as_array_mut() {
                volumes.push(token_volume(&volume_name));
            }
        }
    }
    let has_pull_secrets =
        spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let account_secrets: Vec<Value> = account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(|name| json!({"name": name}))
        .collect();
    if !has_pull_secrets && !account_secrets.is_empty() {
        spec.insert("imagePullSecrets".into(), Value::Array(account_secrets));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]},
            ],
        }})
    }

    #[test]
    fn every_container_without_the_path_mounts_the_new_volume() {
        let mut p = pod();
        inject(&mut p, &json!({}), "x2b4z");
        let mount = json!({"name": "kube-api-access-x2b4z", "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(p.pointer("/spec/initContainers/0/volumeMounts"), Some(&json!([mount])));
        assert_eq!(p.pointer("/spec/containers/0/volumeMounts/1"), Some(&mount));
        assert_eq!(
            p.pointer("/spec/containers/1/volumeMounts"),
            Some(&json!([{"name": "mine", "mountPath": MOUNT_PATH}]))
        );
        assert_eq!(p.pointer("/spec/volumes"), Some(&json!([token_volume("kube-api-access-x2b4z")])));
        assert_eq!(
            p.pointer("/spec/volumes/0/projected/sources/0/serviceAccountToken/expirationSeconds"),
            Some(&json!(3607))
        );
    }

    #[test]
    fn automount_false_on_the_pod_wins_over_the_service_account() {
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        inject(&mut p, &json!({"automountServiceAccountToken": true}), "x2b4z");
        assert!(p.pointer("/spec/volumes").is_none());
        let mut p = pod();
        inject(&mut p, &json!({"automountServiceAccountToken": false}), "x2b4z");
        assert!(p.pointer("/spec/volumes").is_none());
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        inject(&mut p, &json!({"automountServiceAccountToken": false}), "x2b4z");
        assert!(p.pointer("/spec/volumes").is_some());
    }

    #[test]
    fn an_existing_token_volume_is_reused_and_pull_secrets_are_copied() {
        let mut p = pod();
        p["spec"]["volumes"] = json!([{"name": "kube-api-access-old", "projected": {"sources": []}}]);
        inject(&mut p, &json!({"imagePullSecrets": [{"name": "registry"}]}), "x2b4z");
        assert_eq!(p.pointer("/spec/volumes").and_then(Value::as_array).map(Vec::len), Some(1));
        assert_eq!(p.pointer("/spec/containers/0/volumeMounts/1/name"), Some(&json!("kube-api-access-old")));
        assert_eq!(p.pointer("/spec/imagePullSecrets"), Some(&json!([{"name": "registry"}])));
    }

    #[test]
    fn mirror_pods_are_recognised_by_their_annotation() {
        assert!(is_mirror_pod(&json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}})));
        assert!(!is_mirror_pod(&pod()));
    }
}
