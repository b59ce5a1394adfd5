//! `/exec`, `/attach` and `/portForward`: the runtime's CRI `Exec`, `Attach` and `PortForward`
//! give a one-time URL of its streaming server; the client's upgrade request is proxied there
//! as it is (upstream's `proxyStream`), so SPDY and WebSocket are negotiated end to end.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use corten_cri::{api, Runtime};
use http::{header, HeaderMap, Request, Response, StatusCode, Uri};
use k8s_openapi::api::core::v1::Pod;
use tracing::debug;

use super::{find_pod, query_pairs, Reject, Shared};
use crate::pod::view;

type Handled = std::result::Result<Response<Body>, Reject>;

/// Which streams the client wants (upstream `remotecommand` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// `input`, `output`, `error` and `tty` = `1` (what the API server sends); `stdin`, `stdout`,
/// `stderr` = `true`/`1` are accepted too. A TTY has no separate stderr.
fn stream_options(pairs: &[(String, String)]) -> std::result::Result<StreamOptions, Reject> {
    let flag = |names: &[&str]| {
        pairs
            .iter()
            .any(|(k, v)| names.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
    };
    let tty = flag(&["tty"]);
    let opts = StreamOptions {
        stdin: flag(&["input", "stdin"]),
        stdout: flag(&["output", "stdout"]),
        stderr: flag(&["error", "stderr"]) && !tty,
        tty,
    };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(opts)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn require_upgrade(req: &Request<Body>) -> std::result::Result<(), Reject> {
    if is_upgrade(req.headers()) {
        Ok(())
    } else {
        Err(Reject::new(StatusCode::BAD_REQUEST, "Upgrade request required"))
    }
}

fn runtime_error(e: corten_cri::Error) -> Reject {
    let status = if e.is_not_found() { StatusCode::NOT_FOUND } else { StatusCode::INTERNAL_SERVER_ERROR };
    Reject::new(status, e.to_string())
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The id of the running instance of `container` in `pod`.
async fn running_container<R: Runtime>(
    shared: &Shared<R>,
    pod: &Pod,
    container: &str,
) -> std::result::Result<String, Reject> {
    let view = view::observe(&shared.runtime, uid(pod))
        .await
        .map_err(|e| Reject::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match view.latest(container).filter(|c| c.running()) {
        Some(c) => Ok(c.id.clone()),
        None => Err(Reject::new(StatusCode::NOT_FOUND, format!("container not found ({container:?})"))),
    }
}

/// Proxies the upgrade request to the runtime's streaming `url`.
async fn proxy(req: Request<Body>, url: String) -> Handled {
    let target: Uri = url.parse().map_err(|e| {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("invalid streaming URL {url:?} from the runtime: {e}"),
        )
    })?;
    corten_streaming::forward(req, target, None).await.map_err(|e| {
        debug!(error = %e, "proxying to the runtime's streaming server failed");
        let mut message = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            message = format!("{message}: {source}");
        }
        Reject::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    })
}

fn answer(result: Handled) -> Response<Body> {
    result.unwrap_or_else(Response::from)
}

async fn do_exec<R: Runtime>(
    shared: Arc<Shared<R>>,
    (namespace, pod, uid): (String, String, Option<String>),
    container: String,
    req: Request<Body>,
) -> Handled {
    let pairs = query_pairs(req.uri());
    let opts = stream_options(&pairs)?;
    require_upgrade(&req)?;
    let cmd: Vec<String> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let pod = find_pod(&shared, &namespace, &pod, uid.as_deref(), || "pod does not exist".to_owned()).await?;
    let id = running_container(&shared, &pod, &container).await?;
    let request = api::ExecRequest {
        container_id: id,
        cmd,
        tty: opts.tty,
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let url = shared.runtime.exec(request).await.map_err(runtime_error)?;
    proxy(req, url).await
}

async fn do_attach<R: Runtime>(
    shared: Arc<Shared<R>>,
    (namespace, pod, uid): (String, String, Option<String>),
    container: String,
    req: Request<Body>,
) -> Handled {
    let opts = stream_options(&query_pairs(req.uri()))?;
    require_upgrade(&req)?;
    let pod = find_pod(&shared, &namespace, &pod, uid.as_deref(), || "pod does not exist".to_owned()).await?;
    let id = running_container(&shared, &pod, &container).await?;
    let request = api::AttachRequest {
        container_id: id,
        stdin: opts.stdin,
        tty: opts.tty,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let url = shared.runtime.attach(request).await.map_err(runtime_error)?;
    proxy(req, url).await
}

/// The `port` query values (each may be a comma-separated list).
fn ports(pairs: &[(String, String)]) -> std::result::Result<Vec<i32>, Reject> {
    let mut ports = Vec::new();
    for value in pairs.iter().filter(|(k, _)| k == "port").flat_map(|(_, v)| v.split(',')) {
        let value = value.trim();
        match value.parse::<u16>() {
            Ok(p) if p > 0 => ports.push(i32::from(p)),
            _ => {
                return Err(Reject::new(
                    StatusCode::BAD_REQUEST,
                    format!("unable to parse {value:?} as a port"),
                ));
            }
        }
    }
    Ok(ports)
}

async fn do_port_forward<R: Runtime>(
    shared: Arc<Shared<R>>,
    (namespace, name, uid): (String, String, Option<String>),
    req: Request<Body>,
) -> Handled {
    let port = ports(&query_pairs(req.uri()))?;
    require_upgrade(&req)?;
    let pod =
        find_pod(&shared, &namespace, &name, uid.as_deref(), || "pod does not exist".to_owned()).await?;
    let view = view::observe(&shared.runtime, self::uid(&pod))
        .await
        .map_err(|e| Reject::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(sandbox) = view.ready_sandbox() else {
        return Err(Reject::new(StatusCode::NOT_FOUND, format!("pod not found (\"{namespace}/{name}\")")));
    };
    let request = api::PortForwardRequest { pod_sandbox_id: sandbox.id.clone(), port };
    let url = shared.runtime.port_forward(request).await.map_err(runtime_error)?;
    proxy(req, url).await
}

/// `GET|POST /exec/{namespace}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1`.
pub(super) async fn exec<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_exec(shared, (namespace, pod, None), container, req).await)
}

/// `GET|POST /exec/{namespace}/{pod}/{uid}/{container}`.
pub(super) async fn exec_uid<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_exec(shared, (namespace, pod, Some(uid)), container, req).await)
}

/// `GET|POST /attach/{namespace}/{pod}/{container}?input=1&output=1&error=1&tty=1`.
pub(super) async fn attach<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_attach(shared, (namespace, pod, None), container, req).await)
}

/// `GET|POST /attach/{namespace}/{pod}/{uid}/{container}`.
pub(super) async fn attach_uid<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_attach(shared, (namespace, pod, Some(uid)), container, req).await)
}

/// `GET|POST /portForward/{namespace}/{pod}?port=80` (the ports may also come as stream headers).
pub(super) async fn port_forward<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod)): Path<(String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_port_forward(shared, (namespace, pod, None), req).await)
}

/// `GET|POST /portForward/{namespace}/{pod}/{uid}`.
pub(super) async fn port_forward_uid<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, pod, uid)): Path<(String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    answer(do_port_forward(shared, (namespace, pod, Some(uid)), req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(&format!("/x?{q}").parse().unwrap())
    }

    #[test]
    fn stream_options_take_the_api_server_names_and_the_aliases() {
        let o = stream_options(&pairs("input=1&output=1&error=1")).unwrap();
        assert_eq!(o, StreamOptions { stdin: true, stdout: true, stderr: true, tty: false });
        let o = stream_options(&pairs("stdin=true&stdout=true&stderr=true&tty=1")).unwrap();
        assert_eq!(o, StreamOptions { stdin: true, stdout: true, stderr: false, tty: true });
        assert_eq!(stream_options(&pairs("tty=1&error=1")).unwrap_err().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn ports_may_repeat_or_be_comma_separated() {
        assert_eq!(ports(&pairs("port=80&port=8080,9090")).unwrap(), [80, 8080, 9090]);
        assert_eq!(ports(&pairs("")).unwrap(), Vec::<i32>::new());
        assert_eq!(ports(&pairs("port=http")).unwrap_err().status(), StatusCode::BAD_REQUEST);
    }
}
