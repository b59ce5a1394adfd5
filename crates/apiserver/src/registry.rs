//! The registry: every served resource described once (group, version, kind, plural, scope,
//! short names, categories, subresources, verbs). It drives routing, discovery, OpenAPI and
//! tables; the REST machinery itself is generic and knows no type by name.
//!
//! Built-in entries come from `k8s-openapi`'s `Resource` constants, so names and scopes cannot
//! drift from the upstream types; only what upstream keeps outside the types (short names,
//! categories, subresources) is written here.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v2 as autoscaling, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde_json::Value;

/// Checks that a JSON object decodes as the resource's type (wrong field types, bad enums).
pub type TypeCheck = fn(&Value) -> Result<(), String>;

/// The standard verbs of a persisted resource.
pub const STANDARD_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// Verbs of create-only review resources (`SelfSubjectReview`, `TokenReview`, ...).
pub const CREATE_ONLY: &[&str] = &["create"];

/// One served resource of one group-version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment, `deployments`.
    pub plural: &'static str,
    /// The lower-case kind, `deployment`.
    pub singular: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served under `<plural>/<name>/<sub>`: `status`, `scale`, `binding`, ...
    pub subresources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Decodes an object as the typed struct, for type errors; `None` for schemaless resources.
    pub type_check: Option<TypeCheck>,
    /// Set when the resource lives in another resource's storage, converted on the way in and
    /// out (`events.k8s.io/v1` Events are stored as core/v1 Events, as in kube-apiserver).
    pub storage: Option<SharedStorage>,
}

/// The storage of another resource that a resource shares, and the conversions to and from
/// that resource's form. Everything read from the store is converted with `from_storage` before
/// it is selected, served or changed; everything written with `to_storage`.
#[derive(Debug, Clone, Copy)]
pub struct SharedStorage {
    /// API group of the resource that owns the storage, `""` for the core group.
    pub group: &'static str,
    /// Plural of the resource that owns the storage.
    pub plural: &'static str,
    /// This resource's form of an object to the stored form.
    pub to_storage: fn(Value) -> Value,
    /// The stored form of an object to this resource's form.
    pub from_storage: fn(Value) -> Value,
}

impl ResourceInfo {
    fn of<T>() -> Self
    where
        T: k8s_openapi::Resource + serde::de::DeserializeOwned + 'static,
    {
        ResourceInfo {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural: T::URL_PATH_SEGMENT,
            singular: T::KIND.to_ascii_lowercase(),
            namespaced: TypeId::of::<T::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
            short_names: &[],
            categories: &[],
            subresources: &[],
            verbs: STANDARD_VERBS,
            type_check: Some(|v| T::deserialize(v).map(drop).map_err(|e| e.to_string())),
            storage: None,
        }
    }

    fn stored_as(mut self, storage: SharedStorage) -> Self {
        self.storage = Some(storage);
        self
    }

    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }

    fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }

    fn sub(mut self, subresources: &'static [&'static str]) -> Self {
        self.subresources = subresources;
        self
    }

    fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-qualified resource of error messages: `pods`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of this resource's list, `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the resource is persisted (has `get`); create-only reviews are not.
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store prefix of every object of this resource (all namespaces); that of the owning
    /// resource for one sharing another's storage.
    pub fn key_prefix(&self) -> String {
        let (group, plural) = match &self.storage {
            Some(s) => (s.group, s.plural),
            None => (self.group, self.plural),
        };
        let group = if group.is_empty() { "core" } else { group };
        format!("/registry/{group}/{plural}/")
    }

    /// A stored object in this resource's form.
    pub fn from_storage(&self, obj: Value) -> Value {
        match &self.storage {
            Some(s) => (s.from_storage)(obj),
            None => obj,
        }
    }

    /// An object of this resource in its stored form.
    pub fn to_storage(&self, obj: Value) -> Value {
        match &self.storage {
            Some(s) => (s.to_storage)(obj),
            None => obj,
        }
    }

    /// The store key of one object (`namespace` ignored for cluster-scoped resources).
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{namespace}/{name}", self.key_prefix())
        } else {
            format!("{}{name}", self.key_prefix())
        }
    }

    /// The store prefix of one namespace's objects (or of all, for `None`).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }
}

/// Every served resource, looked up by group/version/plural.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
    by_path: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Registry {
    /// The built-in resources of Kubernetes v1.33 that are served by default (GA versions).
    pub fn builtin() -> Self {
        Self::new(builtin_resources())
    }

    pub fn new(resources: Vec<ResourceInfo>) -> Self {
        let resources: Vec<Arc<ResourceInfo>> = resources.into_iter().map(Arc::new).collect();
        let by_path = resources
            .iter()
            .map(|r| ((r.group.to_string(), r.version.to_string(), r.plural.to_string()), r.clone()))
            .collect();
        Registry { resources, by_path }
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceInfo>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Looks a resource up by kind (the preferred version when a kind is served in several).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&Arc<ResourceInfo>> {
        self.resources.iter().find(|r| r.group == group && r.kind == kind)
    }

    pub fn resources(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.resources.iter()
    }

    /// The served groups in discovery order (core first), each with its versions in preference
    /// order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in &self.resources {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => groups.push((r.group, vec![r.version])),
            }
        }
        groups
    }

    /// Whether `group/version` is served.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.resources.iter().any(|r| r.group == group && r.version == version)
    }
}

/// `autoscaling/v1` Scale, the body of every `scale` subresource.
pub fn scale_resource() -> ResourceInfo {
    ResourceInfo::of::<k8s_openapi::api::autoscaling::v1::Scale>()
}

fn builtin_resources() -> Vec<ResourceInfo> {
    use ResourceInfo as R;
    const STATUS: &[&str] = &["status"];
    const SCALED: &[&str] = &["scale", "status"];
    vec![
        // core/v1
        R::of::<core::Binding>().verbs(CREATE_ONLY),
        R::of::<core::ConfigMap>().short(&["cm"]),
        R::of::<core::Endpoints>().short(&["ep"]),
        R::of::<core::Event>().short(&["ev"]),
        R::of::<core::LimitRange>().short(&["limits"]),
        R::of::<core::Namespace>().short(&["ns"]).sub(&["finalize", "status"]),
        R::of::<core::Node>().short(&["no"]).sub(&["proxy", "status"]),
        R::of::<core::PersistentVolumeClaim>().short(&["pvc"]).sub(STATUS),
        R::of::<core::PersistentVolume>().short(&["pv"]).sub(STATUS),
        // log, exec, attach, portforward and proxy are connect subresources (rest::connect).
        R::of::<core::Pod>().short(&["po"]).all().sub(&[
            "attach",
            "binding",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "status",
        ]),
        R::of::<core::PodTemplate>(),
        R::of::<core::ReplicationController>().short(&["rc"]).all().sub(SCALED),
        R::of::<core::ResourceQuota>().short(&["quota"]).sub(STATUS),
        R::of::<core::Secret>(),
        R::of::<core::ServiceAccount>().short(&["sa"]).sub(&["token"]),
        R::of::<core::Service>().short(&["svc"]).all().sub(STATUS),
        // admissionregistration.k8s.io/v1
        R::of::<admission::MutatingWebhookConfiguration>(),
        R::of::<admission::ValidatingAdmissionPolicy>().sub(STATUS),
        R::of::<admission::ValidatingAdmissionPolicyBinding>(),
        R::of::<admission::ValidatingWebhookConfiguration>(),
        // apiextensions.k8s.io/v1
        R::of::<apiextensions::CustomResourceDefinition>().short(&["crd", "crds"]).sub(STATUS),
        // apiregistration.k8s.io/v1
        R::of::<apiregistration::APIService>().sub(STATUS),
        // apps/v1
        R::of::<apps::ControllerRevision>(),
        R::of::<apps::DaemonSet>().short(&["ds"]).all().sub(STATUS),
        R::of::<apps::Deployment>().short(&["deploy"]).all().sub(SCALED),
        R::of::<apps::ReplicaSet>().short(&["rs"]).all().sub(SCALED),
        R::of::<apps::StatefulSet>().short(&["sts"]).all().sub(SCALED),
        // authentication.k8s.io/v1, authorization.k8s.io/v1: create-only reviews
        R::of::<authn::SelfSubjectReview>().verbs(CREATE_ONLY),
        R::of::<authn::TokenReview>().verbs(CREATE_ONLY),
        R::of::<authz::LocalSubjectAccessReview>().verbs(CREATE_ONLY),
        R::of::<authz::SelfSubjectAccessReview>().verbs(CREATE_ONLY),
        R::of::<authz::SelfSubjectRulesReview>().verbs(CREATE_ONLY),
        R::of::<authz::SubjectAccessReview>().verbs(CREATE_ONLY),
        // autoscaling/v2
        R::of::<autoscaling::HorizontalPodAutoscaler>().short(&["hpa"]).all().sub(STATUS),
        // batch/v1
        R::of::<batch::CronJob>().short(&["cj"]).all().sub(STATUS),
        R::of::<batch::Job>().all().sub(STATUS),
        // certificates.k8s.io/v1
        R::of::<certificates::CertificateSigningRequest>().short(&["csr"]).sub(&["approval", "status"]),
        // coordination.k8s.io/v1
        R::of::<coordination::Lease>(),
        // discovery.k8s.io/v1
        R::of::<discovery::EndpointSlice>(),
        // events.k8s.io/v1
        R::of::<events::Event>().short(&["ev"]).stored_as(SharedStorage {
            group: "",
            plural: "events",
            to_storage: crate::convert::events::to_core,
            from_storage: crate::convert::events::from_core,
        }),
        // flowcontrol.apiserver.k8s.io/v1
        R::of::<flowcontrol::FlowSchema>().sub(STATUS),
        R::of::<flowcontrol::PriorityLevelConfiguration>().sub(STATUS),
        // networking.k8s.io/v1
        R::of::<networking::IngressClass>(),
        R::of::<networking::Ingress>().short(&["ing"]).sub(STATUS),
        R::of::<networking::IPAddress>().short(&["ip"]),
        R::of::<networking::NetworkPolicy>().short(&["netpol"]),
        R::of::<networking::ServiceCIDR>().sub(STATUS),
        // node.k8s.io/v1
        R::of::<node::RuntimeClass>(),
        // policy/v1
        R::of::<policy::PodDisruptionBudget>().short(&["pdb"]).sub(STATUS),
        // rbac.authorization.k8s.io/v1
        R::of::<rbac::ClusterRoleBinding>(),
        R::of::<rbac::ClusterRole>(),
        R::of::<rbac::RoleBinding>(),
        R::of::<rbac::Role>(),
        // scheduling.k8s.io/v1
        R::of::<scheduling::PriorityClass>().short(&["pc"]),
        // storage.k8s.io/v1
        R::of::<storage::CSIDriver>(),
        R::of::<storage::CSINode>(),
        R::of::<storage::CSIStorageCapacity>(),
        R::of::<storage::StorageClass>().short(&["sc"]),
        R::of::<storage::VolumeAttachment>().sub(STATUS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_takes_names_and_scope_from_k8s_openapi() {
        let reg = Registry::builtin();
        let deploy = reg.get("apps", "v1", "deployments").map(|r| r.as_ref().clone());
        let deploy = deploy.unwrap_or_else(|| panic!("deployments not registered"));
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(deploy.singular, "deployment");
        assert!(deploy.namespaced);
        assert_eq!(deploy.qualified(), "deployments.apps");
        assert_eq!(deploy.key("default", "web"), "/registry/apps/deployments/default/web");
        let ns = reg.get("", "v1", "namespaces").map(|r| r.namespaced);
        assert_eq!(ns, Some(false));
    }

    #[test]
    fn events_k8s_io_events_live_in_the_core_event_storage() {
        let reg = Registry::builtin();
        let key = |group: &str| reg.get(group, "v1", "events").map(|r| r.key("default", "e"));
        assert_eq!(key("events.k8s.io"), Some("/registry/core/events/default/e".to_string()));
        assert_eq!(key("events.k8s.io"), key(""));
        let events = reg.get("events.k8s.io", "v1", "events").map(|r| r.as_ref().clone());
        let events = events.unwrap_or_else(|| panic!("events.k8s.io events registered"));
        let stored = events.to_storage(serde_json::json!({"note": "n", "regarding": {"name": "p"}}));
        assert_eq!(stored["message"], "n");
        assert_eq!(events.from_storage(stored)["regarding"]["name"], "p");
    }

    #[test]
    fn core_group_comes_first_in_discovery_order() {
        let groups = Registry::builtin().groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
    }

    #[test]
    fn type_check_reports_wrong_field_types() {
        let reg = Registry::builtin();
        let pods = reg.get("", "v1", "pods").and_then(|r| r.type_check);
        let check = pods.unwrap_or_else(|| panic!("pods have a type check"));
        assert!(check(&serde_json::json!({"spec": {"containers": "nope"}})).is_err());
        assert!(check(&serde_json::json!({"spec": {"containers": []}})).is_ok());
    }
}
