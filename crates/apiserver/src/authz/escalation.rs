//! Escalation prevention (upstream `ConfirmNoEscalation` and `BindingAuthorized`): a user may
//! create or update a Role or ClusterRole only with rules it holds itself (or with the verb
//! `escalate` on it), and a RoleBinding or ClusterRoleBinding only to a role whose rules it
//! holds (or with the verb `bind` on that role).

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

use super::{Attributes, Authorizer, RoleKind, Rule, SUPERUSER_GROUP};
use crate::error::{ApiError, Result};
use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::{Identity, Shared};

const RBAC: &str = "rbac.authorization.k8s.io";

fn without_metadata(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(m) = obj.as_object_mut() {
        m.remove("metadata");
    }
    obj
}

fn decode<T: serde::de::DeserializeOwned>(
    info: &ResourceInfo,
    obj: &Value,
    field: &str,
) -> Result<Option<T>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("{} {field}: {e}", info.kind))),
    }
}

/// Checks a create (`current == None`) or update of an RBAC object by the requester of `q`;
/// other resources and the server's own writes pass.
pub(crate) fn admit<S>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    new: &Value,
    current: Option<&Value>,
    q: &Query,
) -> Result<()> {
    if info.group != RBAC {
        return Ok(());
    }
    let Some(user) = q.requester.as_ref() else { return Ok(()) };
    if user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return Ok(());
    }
    // Changes of metadata only (finalizers, owner references of the garbage collector) grant
    // nothing.
    if current.is_some_and(|cur| without_metadata(cur) == without_metadata(new)) {
        return Ok(());
    }
    let authz = &shared.authz;
    let name = crate::meta::name_of(new).to_string();
    let namespace = if info.namespaced {
        crate::meta::meta_str(new, "namespace").unwrap_or("").to_string()
    } else {
        String::new()
    };
    let forbidden = |e: String| ApiError::forbidden(info.group, info.plural, &name, e);
    match info.kind {
        "Role" | "ClusterRole" => {
            let escalate = Attributes::resource("escalate", RBAC, info.plural, &namespace, &name);
            if authz.authorize(user, &escalate).allowed {
                return Ok(());
            }
            let rules: Vec<PolicyRule> = decode(info, new, "rules")?.unwrap_or_default();
            let mut rules: Vec<Rule> = rules.iter().map(Rule::from).collect();
            if info.kind == "ClusterRole" && new.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                rules = full_authority();
            }
            confirm_no_escalation(authz, user, &namespace, &rules).map_err(forbidden)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let Some(role_ref) = decode::<RoleRef>(info, new, "roleRef")? else { return Ok(()) };
            let (kind, plural) = if role_ref.kind == "Role" {
                (RoleKind::Role, "roles")
            } else {
                (RoleKind::ClusterRole, "clusterroles")
            };
            let bind = Attributes::resource("bind", RBAC, plural, &namespace, &role_ref.name);
            if authz.authorize(user, &bind).allowed {
                return Ok(());
            }
            let rules = authz
                .role_rules(&kind, &namespace, &role_ref.name)
                .ok_or_else(|| forbidden(format!("{plural}.{RBAC} {:?} not found", role_ref.name)))?;
            confirm_no_escalation(authz, user, &namespace, &rules).map_err(forbidden)
        }
        _ => Ok(()),
    }
}

/// Every permission there is (what an aggregated ClusterRole may come to hold).
fn full_authority() -> Vec<Rule> {
    let all = || vec!["*".to_string()];
    vec![
        Rule { verbs: all(), api_groups: all(), resources: all(), ..Rule::default() },
        Rule { verbs: all(), non_resource_urls: all(), ..Rule::default() },
    ]
}

/// `Err(message)` when `user` does not hold every rule of `rules` in `namespace`.
fn confirm_no_escalation(
    authz: &Authorizer,
    user: &Identity,
    namespace: &str,
    rules: &[Rule],
) -> std::result::Result<(), String> {
    let (owner, errors) = authz.rules_for(user, namespace);
    let missing = super::rules::missing(&owner, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let groups = user.groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = missing.iter().map(Rule::compact_string).collect();
    let mut msg = format!(
        "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.user,
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}
