//! The connect subresources: `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`,
//! `pods/proxy` and `nodes/proxy`. None of them touches the store beyond reading the pod and its
//! node: each resolves where the request must go (the kubelet of the pod's node, or the pod
//! itself) and forwards it with [`corten_streaming::forward`], which streams bodies (`logs -f`)
//! and joins `101 Switching Protocols` upgrades (SPDY and WebSocket exec, attach and
//! port-forward) both ways.
//!
//! These requests bypass the generic body-buffering path: their body is a stream and their
//! hyper upgrade extension must reach the forwarder intact.
//!
//! The kubelet is found like kube-apiserver does with
//! `--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP` and the port the kubelet
//! reports in `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset); the API server
//! authenticates to it with [`ApiConfig::kubelet_tls`](crate::ApiConfig::kubelet_tls).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use corten_store::Store;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::error::{ApiError, Cause, Result};
use crate::objects;
use crate::request::Target;
use crate::Shared;

/// The kubelet port when a node does not report one (upstream's `ports.KubeletPort`).
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// The node address types tried in order (kube-apiserver `--kubelet-preferred-address-types`).
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "Hostname", "ExternalIP"];
/// How much of a failed kubelet response is read into the error (upstream `maxReadLength`).
const MAX_ERROR_BODY: usize = 50 * 1024;

/// Characters escaped in query values: everything but RFC 3986's unreserved ones.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Characters escaped in path segments (pod, namespace and container names are DNS labels, but
/// be safe).
const SEGMENT: &AsciiSet = QUERY;

/// Whether `target` is one of the connect subresources served here.
pub(crate) fn handles(target: &Target) -> bool {
    if !target.group.is_empty() || target.version != "v1" || target.name.is_none() {
        return false;
    }
    matches!(
        (target.resource.as_str(), target.subresource.as_deref()),
        ("pods", Some("log" | "exec" | "attach" | "portforward" | "proxy")) | ("nodes", Some("proxy"))
    )
}

/// Serves a connect request; `req` still has its body and upgrade extension.
pub(crate) async fn serve<S: Store>(shared: &Shared<S>, target: Target, req: Request) -> Result<Response> {
    let name = target.name.clone().unwrap_or_default();
    let sub = target.subresource.clone().unwrap_or_default();
    let params = Params::parse(req.uri().query());
    if target.resource == "nodes" {
        if target.namespace.is_some() {
            return Err(ApiError::UnknownPath);
        }
        check_method(req.method(), PROXY_METHODS)?;
        return node_proxy(shared, &name, target.proxy_path.as_deref().unwrap_or(""), req).await;
    }
    let Some(ns) = target.namespace.clone() else { return Err(ApiError::UnknownPath) };
    match sub.as_str() {
        "log" => {
            check_method(req.method(), &[Method::GET])?;
            log(shared, &ns, &name, &params, req).await
        }
        "exec" | "attach" | "portforward" => {
            check_method(req.method(), &[Method::GET, Method::POST])?;
            stream(shared, &ns, &name, &sub, &params, req).await
        }
        _ => {
            check_method(req.method(), PROXY_METHODS)?;
            pod_proxy(shared, &ns, &name, target.proxy_path.as_deref().unwrap_or(""), req).await
        }
    }
}

const PROXY_METHODS: &[Method] =
    &[Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

fn check_method(method: &Method, allowed: &[Method]) -> Result<()> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// Query parameters in order, repeated ones kept (`command=sh&command=-c`).
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
        };
        Params(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// A boolean option (Go's `strconv.ParseBool`); absent is false.
    fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("" | "0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(v) => {
                Err(ApiError::BadRequest(format!("invalid value for {key}: {v:?}: must be a boolean")))
            }
        }
    }

    /// An integer option; absent is `None`.
    fn int(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }
}

/// Encodes query pairs like Go's `url.Values.Encode` (sorted by key, order kept within a key).
fn encode_query(mut pairs: Vec<(&str, String)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        let _ = write!(out, "{}={}", utf8_percent_encode(k, QUERY), utf8_percent_encode(&v, QUERY));
    }
    out
}

fn pods_info<S>(shared: &Shared<S>, resource: &str) -> Result<Arc<crate::registry::ResourceInfo>> {
    shared.registry.get("", "v1", resource).cloned().ok_or(ApiError::UnknownPath)
}

/// The pod `ns/name`, or 404 like a GET.
async fn get_pod<S: Store>(shared: &Shared<S>, ns: &str, name: &str) -> Result<Value> {
    let info = pods_info(shared, "pods")?;
    let (pod, _) = objects::get(&shared.store, &info, &info.key(ns, name), false)
        .await?
        .ok_or_else(|| ApiError::not_found(&info, name))?;
    Ok(pod)
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn has_container(pod: &Value, container: &str) -> bool {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .any(|f| container_names(pod, f).iter().any(|c| c == container))
}

/// The container a log request is for (upstream `validateContainer` of `LogLocation`).
fn log_container(pod: &Value, name: &str, container: Option<&str>) -> Result<String> {
    match container.filter(|c| !c.is_empty()) {
        Some(c) if has_container(pod, c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None => {
            let containers = container_names(pod, "containers");
            match containers.len() {
                1 => Ok(containers[0].clone()),
                0 => Err(ApiError::BadRequest(format!("a container name must be specified for pod {name}"))),
                _ => {
                    let all: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
                        .iter()
                        .flat_map(|f| container_names(pod, f))
                        .collect();
                    Err(ApiError::BadRequest(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        all.join(" ")
                    )))
                }
            }
        }
    }
}

/// The container an exec or attach is for (upstream `streamLocation`).
fn stream_container(pod: &Value, name: &str, container: Option<&str>) -> Result<String> {
    match container.filter(|c| !c.is_empty()) {
        Some(c) if has_container(pod, c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None => {
            let containers = container_names(pod, "containers");
            match containers.len() {
                1 => Ok(containers[0].clone()),
                0 => Err(ApiError::BadRequest(format!("a container name must be specified for pod {name}"))),
                _ => {
                    let mut msg = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    );
                    let init = container_names(pod, "initContainers");
                    if !init.is_empty() {
                        let _ = write!(msg, " or one of the init containers: [{}]", init.join(" "));
                    }
                    Err(ApiError::BadRequest(msg))
                }
            }
        }
    }
}

/// Where a node's kubelet listens: `(host, port)`.
async fn kubelet_address<S: Store>(shared: &Shared<S>, node: &str) -> Result<(String, u16)> {
    let info = pods_info(shared, "nodes")?;
    let (node_obj, _) = objects::get(&shared.store, &info, &info.key("", node), false)
        .await?
        .ok_or_else(|| ApiError::not_found(&info, node))?;
    let addresses = node_obj["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let pick = PREFERRED_ADDRESS_TYPES.iter().find_map(|ty| {
        addresses
            .iter()
            .find(|a| a["type"] == *ty && a["address"].as_str().is_some_and(|s| !s.is_empty()))
            .and_then(|a| a["address"].as_str())
    });
    let Some(host) = pick else {
        let known: Vec<String> = addresses
            .iter()
            .map(|a| {
                format!("{{{} {}}}", a["type"].as_str().unwrap_or(""), a["address"].as_str().unwrap_or(""))
            })
            .collect();
        return Err(ApiError::Unknown(format!(
            "no preferred addresses found; known addresses: [{}]",
            known.join(" ")
        )));
    };
    let port = node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

/// `host:port`, with brackets around IPv6 addresses (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The 503 of a connect request when the API server has no TLS client towards kubelets.
fn no_kubelet_client() -> Response {
    status_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the API server has no kubelet client configured: logs, exec, attach, port-forward and node proxy are not available",
    )
}

/// A `Failure` Status response without `Retry-After` (client-go would retry those).
fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if reason.is_empty() {
        if let Some(obj) = status.as_object_mut() {
            obj.remove("reason");
        }
    }
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn uri(scheme: &str, authority: &str, path: &str, query: &str) -> Result<Uri> {
    let path = if path.is_empty() { "/" } else { path };
    let text = if query.is_empty() {
        format!("{scheme}://{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}?{query}")
    };
    text.parse::<Uri>().map_err(|e| ApiError::BadRequest(format!("invalid backend location {text:?}: {e}")))
}

/// `pods/log`: `GET /containerLogs/{ns}/{pod}/{container}` on the pod's kubelet, streamed back as
/// `text/plain`.
async fn log<S: Store>(
    shared: &Shared<S>,
    ns: &str,
    name: &str,
    params: &Params,
    req: Request,
) -> Result<Response> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if params.flag(flag)? {
            query.push((flag, "true".into()));
        }
    }
    let since_seconds = params.int("sinceSeconds")?;
    let tail_lines = params.int("tailLines")?;
    let limit_bytes = params.int("limitBytes")?;
    let since_time = match params.get("sinceTime").filter(|s| !s.is_empty()) {
        Some(t) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|e| ApiError::BadRequest(format!("invalid value for sinceTime: {t:?}: {e}")))?,
        ),
        None => None,
    };
    let mut causes = Vec::new();
    if let Some(n) = tail_lines.filter(|n| *n < 0) {
        causes.push(Cause::invalid("tailLines", &json!(n), "must be greater than or equal to 0"));
    }
    if let Some(n) = limit_bytes.filter(|n| *n < 1) {
        causes.push(Cause::invalid("limitBytes", &json!(n), "must be greater than 0"));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => {
            causes.push(Cause::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        }
        (Some(n), None) if n < 1 => {
            causes.push(Cause::invalid("sinceSeconds", &json!(n), "must be greater than 0"))
        }
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "PodLogOptions".into(),
            name: name.into(),
            causes,
        });
    }
    if let Some(n) = since_seconds {
        query.push(("sinceSeconds", n.to_string()));
    }
    if let Some(t) = since_time {
        query.push(("sinceTime", t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    if let Some(n) = tail_lines {
        query.push(("tailLines", n.to_string()));
    }
    if let Some(n) = limit_bytes {
        query.push(("limitBytes", n.to_string()));
    }

    let pod = get_pod(shared, ns, name).await?;
    let container = log_container(&pod, name, params.get("container"))?;
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        // Upstream returns an empty location, which streams nothing.
        return Ok(text_response(Body::empty()));
    };
    let (host, port) = kubelet_address(shared, node).await?;
    let Some(tls) = shared.config.kubelet_tls.clone() else { return Ok(no_kubelet_client()) };
    let path = format!("/containerLogs/{}/{}/{}", seg(ns), seg(name), seg(&container));
    let target = uri("https", &join_host_port(&host, port), &path, &encode_query(query))?;
    let resp = send(req, target, Some(tls)).await?;
    let code = resp.status();
    if code.is_success() {
        return Ok(text_response(resp.into_body()));
    }
    let body = axum::body::to_bytes(resp.into_body(), MAX_ERROR_BODY).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim_end().to_string();
    Err(backend_error(code, text))
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn text_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A kubelet's error answer as an API error (upstream `GenericHttpResponseChecker`).
fn backend_error(code: StatusCode, text: String) -> ApiError {
    match code {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
        StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal(text),
        StatusCode::NOT_FOUND => ApiError::Unknown(if text.is_empty() {
            "the server could not find the requested resource".into()
        } else {
            text
        }),
        StatusCode::FORBIDDEN => ApiError::Forbidden(text),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(text),
        _ if text.is_empty() => ApiError::Unknown(format!(
            "the server responded with the status code {} but did not return more information",
            code.as_u16()
        )),
        _ => ApiError::Unknown(text),
    }
}

/// `pods/exec`, `pods/attach` and `pods/portforward`: upgraded streams to the pod's kubelet.
async fn stream<S: Store>(
    shared: &Shared<S>,
    ns: &str,
    name: &str,
    sub: &str,
    params: &Params,
    req: Request,
) -> Result<Response> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if sub == "portforward" {
        let ports = params.all("ports");
        let mut list = Vec::new();
        for p in ports.iter().flat_map(|p| p.split(',')).filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => list.push(port.to_string()),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid port {p:?}: must be between 1 and 65535"
                    )))
                }
            }
        }
        if !list.is_empty() {
            query.push(("port", list.join(",")));
        }
    } else {
        for (param, kubelet) in
            [("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")]
        {
            if params.flag(param)? {
                query.push((kubelet, "1".into()));
            }
        }
        if sub == "exec" {
            let command = params.all("command");
            if command.is_empty() {
                return Err(ApiError::BadRequest("you must specify at least 1 command".into()));
            }
            query.extend(command.into_iter().map(|c| ("command", c)));
        }
    }
    let pod = get_pod(shared, ns, name).await?;
    let path = if sub == "portforward" {
        format!("/portForward/{}/{}", seg(ns), seg(name))
    } else {
        let container = stream_container(&pod, name, params.get("container"))?;
        format!("/{sub}/{}/{}/{}", seg(ns), seg(name), seg(&container))
    };
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    };
    let (host, port) = kubelet_address(shared, node).await?;
    let Some(tls) = shared.config.kubelet_tls.clone() else { return Ok(no_kubelet_client()) };
    let target = uri("https", &join_host_port(&host, port), &path, &encode_query(query))?;
    send(req, target, Some(tls)).await
}

/// `[scheme:]name[:port]` (upstream `SplitSchemeNamePort`).
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// `pods/proxy`: straight to the pod's IP (upstream pod `ResourceLocation`).
async fn pod_proxy<S: Store>(
    shared: &Shared<S>,
    ns: &str,
    id: &str,
    rest: &str,
    req: Request,
) -> Result<Response> {
    let Some((scheme, name, port)) = split_scheme_name_port(id) else {
        return Err(ApiError::BadRequest(format!("invalid pod request {id:?}")));
    };
    let pod = get_pod(shared, ns, name).await?;
    let mut port = port.to_string();
    if port.is_empty() {
        let first = pod["spec"]["containers"].as_array().and_then(|cs| {
            cs.iter().find_map(|c| {
                c["ports"].as_array().and_then(|ps| ps.first()).map(|p| p["containerPort"].clone())
            })
        });
        if let Some(p) = first.and_then(|p| p.as_u64()) {
            port = p.to_string();
        }
    }
    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
    let allowed = ip.parse::<IpAddr>().is_ok_and(|ip| is_global_unicast(&ip));
    if !allowed {
        return Err(ApiError::BadRequest("address not allowed".into()));
    }
    if scheme == "https" {
        return Err(ApiError::BadRequest("proxying to pods over https is not supported".into()));
    }
    let authority = match port.parse::<u16>() {
        Ok(p) => join_host_port(ip, p),
        Err(_) if port.is_empty() => join_host_port(ip, 80),
        Err(_) => return Err(ApiError::BadRequest(format!("invalid pod request {id:?}: bad port {port:?}"))),
    };
    let target = uri("http", &authority, rest, req.uri().query().unwrap_or(""))?;
    send(req, target, None).await
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or broadcast.
fn is_global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || v6.is_unicast_link_local())
        }
    }
}

/// `nodes/proxy`: the node's kubelet (HTTPS) or, for another port, plain HTTP to that port.
async fn node_proxy<S: Store>(shared: &Shared<S>, id: &str, rest: &str, req: Request) -> Result<Response> {
    let Some((scheme, name, port)) = split_scheme_name_port(id) else {
        return Err(ApiError::BadRequest(format!("invalid node request {id:?}")));
    };
    let (host, kubelet_port) = kubelet_address(shared, name).await?;
    let query = req.uri().query().unwrap_or("").to_string();
    if port.is_empty() || port == kubelet_port.to_string() {
        let Some(tls) = shared.config.kubelet_tls.clone() else { return Ok(no_kubelet_client()) };
        let target = uri("https", &join_host_port(&host, kubelet_port), rest, &query)?;
        return send(req, target, Some(tls)).await;
    }
    let port: u16 = port.parse().map_err(|_| ApiError::BadRequest(format!("invalid node request {id:?}")))?;
    if scheme == "https" {
        return Err(ApiError::BadRequest("proxying to node ports over https is not supported".into()));
    }
    let target = uri("http", &join_host_port(&host, port), rest, &query)?;
    send(req, target, None).await
}

/// Whether `headers` ask for a protocol upgrade (`Connection: Upgrade` + `Upgrade`).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Forwards `req` to `target` without the caller's credentials; a failure to reach the backend
/// is a 500 naming the URL like kube-apiserver's (`Get "https://...": dial tcp ...`).
async fn send(req: Request, target: Uri, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Response> {
    let (mut parts, body) = req.into_parts();
    let upgrade = is_upgrade(&parts.headers);
    parts.headers.remove(header::AUTHORIZATION);
    let impersonation: Vec<_> =
        parts.headers.keys().filter(|k| k.as_str().starts_with("impersonate-")).cloned().collect();
    for k in impersonation {
        parts.headers.remove(k);
    }
    if let Some(host) = target.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        parts.headers.insert(header::HOST, host);
    }
    let method = parts.method.clone();
    let req = Request::from_parts(parts, body);
    tracing::debug!(%target, %method, upgrade, "forwarding a connect request");
    match corten_streaming::forward(req, target.clone(), tls).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let reason = describe(&e, &target);
            tracing::warn!(%target, error = %reason, "the backend of a connect request is not reachable");
            Err(ApiError::Unknown(if upgrade {
                format!("error dialing backend: {reason}")
            } else {
                format!("{} \"{target}\": {reason}", go_method(&method))
            }))
        }
    }
}

/// `Get`, `Post`: how Go's `url.Error` names a method.
fn go_method(method: &Method) -> String {
    let m = method.as_str().to_ascii_lowercase();
    let mut chars = m.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => m,
    }
}

/// Why the backend at `target` could not be reached, worded like Go's net errors
/// (`dial tcp 10.0.0.1:10250: connection refused`).
fn describe(e: &corten_streaming::Error, target: &Uri) -> String {
    let authority = target.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    match e {
        corten_streaming::Error::Connect { source, .. } => {
            format!("dial tcp {authority}: {}", error_chain(source))
        }
        corten_streaming::Error::Tls { source, .. } => format!("tls: {}", error_chain(source)),
        corten_streaming::Error::Http { source, .. } => error_chain(source),
        other => error_chain(other),
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_sorted_like_go_url_values() {
        let q = encode_query(vec![
            ("output", "1".into()),
            ("command", "sh".into()),
            ("command", "-c".into()),
            ("command", "echo $((6*7))".into()),
            ("error", "1".into()),
        ]);
        assert_eq!(q, "command=sh&command=-c&command=echo%20%24%28%286%2A7%29%29&error=1&output=1");
    }

    #[test]
    fn scheme_name_port_splits_like_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:8080"), Some(("", "web", "8080")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn container_choice_errors_name_the_candidates_like_upstream() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}],
        }});
        let msg = |r: Result<String>| r.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert_eq!(
            msg(log_container(&pod, "p", None)),
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(
            msg(stream_container(&pod, "p", None)),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(msg(stream_container(&pod, "p", Some("c"))), "container c is not valid for pod p");
        assert_eq!(log_container(&pod, "p", Some("init")).ok().as_deref(), Some("init"));
    }

    #[test]
    fn upgrades_are_recognised_by_connection_and_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_upgrade(&h));
        assert_eq!(go_method(&Method::GET), "Get");
    }
}
