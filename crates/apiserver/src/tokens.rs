//! Service-account tokens in the API server: the `serviceaccounts/token` subresource (a
//! `TokenRequest` in, the same object with `status.token` out, as kube-apiserver's `TokenREST`),
//! and the checks that invalidate a bound token once its service account, pod, secret or node is
//! gone or was recreated (kube-apiserver's service-account token validator).
//!
//! Signing and verifying are not done here: the API server gets a [`TokenIssuer`] and a
//! [`TokenAuthenticator`](crate::TokenAuthenticator) in [`ApiConfig`](crate::ApiConfig), so this
//! crate needs no key material and no cryptography.

use std::time::{Duration, SystemTime};

use corten_store::Store;
use serde_json::{json, Value};

use crate::error::{ApiError, Cause, Result};
use crate::registry::ResourceInfo;
use crate::{meta, objects, Identity, Shared};

/// A `TokenRequest` without `spec.expirationSeconds` asks for one hour.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token lifetime kube-apiserver issues.
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// The longest token lifetime kube-apiserver issues.
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// A token bound to an object whose deletion began longer ago than this is refused (the
/// validator's leeway for clocks and graceful deletion).
const DELETION_LEEWAY: Duration = Duration::from_secs(60);
/// The group of `TokenRequest`.
const GROUP: &str = "authentication.k8s.io";

/// An object a token is bound to, by name and uid (an empty uid: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    /// The object's name.
    pub name: String,
    /// The object's uid.
    pub uid: String,
}

/// What a service-account token says, both when the API server asks a [`TokenIssuer`] to sign
/// one and when a [`TokenAuthenticator`](crate::TokenAuthenticator) has verified one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub name: String,
    /// The service account's uid.
    pub uid: String,
    /// Who the token is meant for (`aud`).
    pub audiences: Vec<String>,
    /// Issue time (`iat`, also `nbf`), seconds since the Unix epoch.
    pub issued_at: u64,
    /// Expiry (`exp`), seconds since the Unix epoch.
    pub expires_at: u64,
    /// The token id (`jti`).
    pub id: Option<String>,
    /// The pod the token is bound to.
    pub pod: Option<BoundObject>,
    /// The secret the token is bound to.
    pub secret: Option<BoundObject>,
    /// The node the token is bound to, or the node its bound pod runs on.
    pub node: Option<BoundObject>,
}

impl ServiceAccountClaims {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The user a token with these claims authenticates as: its username in the groups
    /// `system:serviceaccounts` and `system:serviceaccounts:<namespace>` (and
    /// `system:authenticated`).
    pub fn identity(&self) -> Identity {
        let groups =
            ["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{}", self.namespace)];
        Identity::new(self.username(), groups)
    }
}

/// Signs service-account tokens for the `serviceaccounts/token` subresource.
///
/// Implementations must produce tokens their [`TokenAuthenticator`](crate::TokenAuthenticator)
/// accepts, carrying exactly the given claims (plus the issuer).
pub trait TokenIssuer: Send + Sync + 'static {
    /// The audiences of tokens meant for this API server; an empty `spec.audiences` means these.
    fn api_audiences(&self) -> Vec<String>;

    /// Signs `claims` into a bearer token.
    fn issue(&self, claims: &ServiceAccountClaims) -> std::result::Result<String, IssueError>;
}

/// Why a token could not be signed (rendered as a 500).
pub type IssueError = Box<dyn std::error::Error + Send + Sync>;

/// What a valid bearer token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuthentication {
    /// The authenticated user.
    pub identity: Identity,
    /// For a service-account token: its claims, which the API server checks against the live
    /// service account and bound objects before it accepts the token.
    pub service_account: Option<ServiceAccountClaims>,
}

fn resource<'a, S>(shared: &'a Shared<S>, plural: &str) -> Result<&'a ResourceInfo> {
    shared
        .registry
        .get("", "v1", plural)
        .map(|info| &**info)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))
}

/// The `TokenRequest` validation error of kube-apiserver (`TokenRequest.authentication.k8s.io`).
fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid { group: GROUP.into(), kind: "TokenRequest".into(), name: name.into(), causes }
}

fn uid_of(obj: &Value) -> String {
    meta::meta_str(obj, "uid").unwrap_or("").to_string()
}

/// Serves `POST .../serviceaccounts/<name>/token`: signs a token for the service account
/// `namespace/name` as `request` (a `TokenRequest`) asks and returns the request with its
/// `status` (the caller answers 201).
pub(crate) async fn request_token<S: Store>(
    shared: &Shared<S>,
    namespace: &str,
    name: &str,
    mut request: Value,
) -> Result<Value> {
    // Without an issuer the subresource is not installed, as in kube-apiserver.
    let issuer = shared.config.token_issuer.as_ref().ok_or(ApiError::UnknownPath)?;
    if !request.is_object() {
        return Err(ApiError::BadRequest("the body of the request must be a TokenRequest object".into()));
    }
    check_kind(&mut request)?;
    if let Some(n) = meta::meta_str(&request, "name").filter(|n| !n.is_empty() && *n != name) {
        let cause =
            Cause::invalid("metadata.name", &json!(n), "must match the service account name if specified");
        return Err(invalid(name, vec![cause]));
    }
    if let Some(ns) = meta::meta_str(&request, "namespace").filter(|ns| !ns.is_empty() && *ns != namespace) {
        let cause = Cause::invalid(
            "metadata.namespace",
            &json!(ns),
            "must match the service account namespace if specified",
        );
        return Err(invalid(name, vec![cause]));
    }
    let sa_info = resource(shared, "serviceaccounts")?;
    let (sa, _) = objects::get(&shared.store, sa_info, &sa_info.key(namespace, name), false)
        .await?
        .ok_or_else(|| ApiError::not_found(sa_info, name))?;

    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = issuer.api_audiences();
    }
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: spec.expirationSeconds: {v} is not an integer"
            ))
        })?,
    };
    let mut causes = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        // kube-apiserver validates the request before it has a name for it.
        return Err(invalid("", causes));
    }

    let now = SystemTime::now();
    let issued_at = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut claims = ServiceAccountClaims {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid_of(&sa),
        audiences: audiences.clone(),
        issued_at,
        expires_at: issued_at.saturating_add(expiration.unsigned_abs()),
        id: Some(uuid::Uuid::new_v4().to_string()),
        pod: None,
        secret: None,
        node: None,
    };
    if let Some(reference) = spec.get("boundObjectRef").filter(|r| r.is_object()) {
        bind(shared, namespace, name, reference, &mut claims).await?;
    }
    let token =
        issuer.issue(&claims).map_err(|e| ApiError::Internal(format!("failed to generate token: {e}")))?;

    let expires = jiff::Timestamp::from_second(i64::try_from(claims.expires_at).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let created = jiff::Timestamp::from_second(i64::try_from(issued_at).unwrap_or(0))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| meta::now_rfc3339());
    let m = meta::metadata_mut(&mut request);
    m.insert("name".into(), json!(name));
    m.insert("namespace".into(), json!(namespace));
    m.insert("creationTimestamp".into(), json!(created));
    let mut spec = spec;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    request["spec"] = spec;
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(request)
}

/// Fills in or checks `apiVersion: authentication.k8s.io/v1` and `kind: TokenRequest`.
fn check_kind(request: &mut Value) -> Result<()> {
    for (field, want) in [("apiVersion", "authentication.k8s.io/v1"), ("kind", "TokenRequest")] {
        match request.get(field).and_then(Value::as_str) {
            None | Some("") => request[field] = json!(want),
            Some(v) if v == want => {}
            Some(v) => {
                let what = if field == "kind" { "kind" } else { "API version" };
                return Err(ApiError::BadRequest(format!(
                    "the {what} in the data ({v}) does not match the expected {what} ({want})"
                )));
            }
        }
    }
    Ok(())
}

/// Resolves `spec.boundObjectRef` (a Pod, Secret or Node of the core group) into `claims`.
async fn bind<S: Store>(
    shared: &Shared<S>,
    namespace: &str,
    sa_name: &str,
    reference: &Value,
    claims: &mut ServiceAccountClaims,
) -> Result<()> {
    let field = |f: &str| reference.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind, name, want_uid) =
        (field("apiVersion"), field("kind"), field("name"), field("uid"));
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let plural = match (group.as_str(), kind.as_str()) {
        ("", "Pod") => "pods",
        ("", "Secret") => "secrets",
        ("", "Node") => "nodes",
        _ => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    let info = resource(shared, plural)?;
    let key = if info.namespaced { info.key(namespace, &name) } else { info.key("", &name) };
    let (obj, _) = objects::get(&shared.store, info, &key, false)
        .await?
        .ok_or_else(|| ApiError::not_found(info, &name))?;
    let uid = uid_of(&obj);
    match plural {
        "pods" => {
            let pod_sa = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("");
            if pod_sa != sa_name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            claims.pod = Some(BoundObject { name: name.clone(), uid: uid.clone() });
            // The node of a scheduled pod goes into the token too, for information (its uid
            // stays empty when the Node object is gone).
            let node = obj.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !node.is_empty() {
                let nodes = resource(shared, "nodes")?;
                let node_uid = objects::get(&shared.store, nodes, &nodes.key("", node), false)
                    .await?
                    .map(|(n, _)| uid_of(&n))
                    .unwrap_or_default();
                claims.node = Some(BoundObject { name: node.to_string(), uid: node_uid });
            }
        }
        "secrets" => claims.secret = Some(BoundObject { name: name.clone(), uid: uid.clone() }),
        _ => claims.node = Some(BoundObject { name: name.clone(), uid: uid.clone() }),
    }
    if !want_uid.is_empty() && want_uid != uid {
        return Err(ApiError::Conflict {
            qualified: kind.clone(),
            group,
            plural: kind,
            name,
            message: format!(
                "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        });
    }
    Ok(())
}

/// Checks a verified service-account token against the store, as kube-apiserver's validator
/// does: the service account must exist with the token's uid, and so must the pod or secret it
/// is bound to (or the node, for a token bound only to a node), without a deletion that began
/// more than a minute ago. `Err` says why the token is refused (for logs; the client gets 401).
pub(crate) async fn check_bound<S: Store>(
    shared: &Shared<S>,
    claims: &ServiceAccountClaims,
) -> Result<(), String> {
    let ns = &claims.namespace;
    let lookup = |plural: &'static str, namespaced: bool, name: String| async move {
        let info = resource(shared, plural).map_err(|e| e.to_string())?;
        let key = info.key(if namespaced { ns } else { "" }, &name);
        objects::get(&shared.store, info, &key, false)
            .await
            .map(|o| o.map(|(v, _)| v))
            .map_err(|e| e.to_string())
    };
    let sa = lookup("serviceaccounts", true, claims.name.clone())
        .await?
        .ok_or_else(|| format!("service account {ns}/{} has been deleted", claims.name))?;
    if uid_of(&sa) != claims.uid {
        return Err(format!("service account UID ({}) does not match claim ({})", uid_of(&sa), claims.uid));
    }
    let mut bound = Vec::new();
    if let Some(secret) = &claims.secret {
        bound.push(("secrets", "secret", true, secret));
    }
    if let Some(pod) = &claims.pod {
        bound.push(("pods", "pod", true, pod));
    }
    if let (Some(node), None) = (&claims.node, &claims.pod) {
        // The node of a pod-bound token is informational; only node-bound tokens check it.
        bound.push(("nodes", "node", false, node));
    }
    for (plural, what, namespaced, reference) in bound {
        let obj = lookup(plural, namespaced, reference.name.clone()).await?;
        let shown = if namespaced { format!("{ns}/{}", reference.name) } else { reference.name.clone() };
        let obj = obj.ok_or_else(|| format!("{what} {shown} has been deleted"))?;
        if uid_of(&obj) != reference.uid {
            return Err(format!("{what} UID ({}) does not match claim ({})", uid_of(&obj), reference.uid));
        }
        if deleted_before_leeway(&obj) {
            return Err(format!(
                "{what} {shown} is being deleted: service account token has been invalidated"
            ));
        }
    }
    Ok(())
}

/// Whether `obj`'s deletion began more than [`DELETION_LEEWAY`] ago.
fn deleted_before_leeway(obj: &Value) -> bool {
    let Some(at) = meta::meta_str(obj, "deletionTimestamp").and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    let leeway = jiff::SignedDuration::try_from(DELETION_LEEWAY).unwrap_or(jiff::SignedDuration::ZERO);
    jiff::Timestamp::now().checked_sub(leeway).is_ok_and(|cutoff| at < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_claims_name_their_user_and_groups() {
        let claims = ServiceAccountClaims {
            namespace: "web".into(),
            name: "builder".into(),
            uid: "u".into(),
            audiences: vec![],
            issued_at: 0,
            expires_at: 0,
            id: None,
            pod: None,
            secret: None,
            node: None,
        };
        let id = claims.identity();
        assert_eq!(id.user, "system:serviceaccount:web:builder");
        assert_eq!(
            id.groups,
            ["system:serviceaccounts", "system:serviceaccounts:web", "system:authenticated"]
                .map(String::from)
        );
    }

    #[test]
    fn the_kind_of_a_token_request_is_filled_in_or_checked() {
        let mut req = json!({});
        assert!(check_kind(&mut req).is_ok());
        assert_eq!(req, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}));
        let mut wrong = json!({"apiVersion": "v1", "kind": "TokenRequest"});
        let err = check_kind(&mut wrong).map_err(|e| e.to_string()).err();
        assert_eq!(
            err.as_deref(),
            Some("the API version in the data (v1) does not match the expected API version (authentication.k8s.io/v1)")
        );
    }

    #[test]
    fn a_deletion_counts_only_after_the_leeway() {
        let old =
            jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(120)).map(|t| t.to_string());
        let recent =
            jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(5)).map(|t| t.to_string());
        assert!(deleted_before_leeway(&json!({"metadata": {"deletionTimestamp": old.ok()}})));
        assert!(!deleted_before_leeway(&json!({"metadata": {"deletionTimestamp": recent.ok()}})));
        assert!(!deleted_before_leeway(&json!({"metadata": {}})));
    }
}
