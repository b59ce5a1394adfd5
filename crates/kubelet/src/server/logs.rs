//! `GET /containerLogs/{namespace}/{pod}/{container}`: the CRI log files the runtime writes
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <message>` per line, `P` for a partial line), read with
//! upstream's `PodLogOptions` semantics: `tailLines` counts file lines from the end, then
//! `sinceSeconds`/`sinceTime` skip older lines, `timestamps` prefixes each line with its time,
//! `limitBytes` caps the output and `follow` streams lines as they are written until the
//! container is no longer running and the file is drained.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use bytes::Bytes;
use corten_cri::api::ContainerState;
use corten_cri::Runtime;
use http::{header, Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;
use tracing::debug;

use super::{find_pod, query_pairs, Reject, Shared};

/// How often a followed log file is re-read once drained.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// The most bytes sent in one body chunk.
const CHUNK: usize = 32 * 1024;

/// Which stream(s) to return (`PodLogOptions.stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streams {
    All,
    Stdout,
    Stderr,
}

/// Upstream's `PodLogOptions` as the kubelet reads them from the query.
#[derive(Debug, Clone, PartialEq)]
struct LogOptions {
    follow: bool,
    previous: bool,
    timestamps: bool,
    since: Option<Timestamp>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    streams: Streams,
}

/// Go's `strconv.ParseBool`, with an empty value meaning false.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        _ => None,
    }
}

/// Decodes and validates the query like upstream's kubelet: 400 `Unable to decode query.`,
/// 422 `Invalid request.` (its JSON-looking plain-text bodies included).
fn log_options(pairs: &[(String, String)], now: Timestamp) -> std::result::Result<LogOptions, Reject> {
    let decode_err = || Reject::new(StatusCode::BAD_REQUEST, r#"{"message": "Unable to decode query."}"#);
    let invalid = || Reject::new(StatusCode::UNPROCESSABLE_ENTITY, r#"{"message": "Invalid request."}"#);
    let last = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let flag = |name: &str| last(name).map_or(Some(false), parse_bool).ok_or_else(decode_err);
    let int = |name: &str| last(name).map(|v| v.parse::<i64>().map_err(|_| decode_err())).transpose();
    // `tail` is the old name of `tailLines`; `tail=all` means no tail.
    let tail_lines = match last("tail") {
        Some("all") => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| decode_err())?),
        None => int("tailLines")?,
    };
    let since_seconds = int("sinceSeconds")?;
    let since_time = last("sinceTime")
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<Timestamp>().map_err(|_| decode_err()))
        .transpose()?;
    let streams = match last("stream") {
        None | Some("") | Some("All") => Streams::All,
        Some("Stdout") => Streams::Stdout,
        Some("Stderr") => Streams::Stderr,
        Some(_) => return Err(invalid()),
    };
    let limit_bytes = int("limitBytes")?;
    if tail_lines.is_some_and(|t| t < 0)
        || limit_bytes.is_some_and(|l| l < 1)
        || since_seconds.is_some_and(|s| s < 1)
        || (since_seconds.is_some() && since_time.is_some())
        || (tail_lines.is_some() && streams != Streams::All)
    {
        return Err(invalid());
    }
    let since = match (since_time, since_seconds) {
        (Some(t), _) => Some(t),
        (None, Some(s)) => {
            Some(now.checked_sub(jiff::SignedDuration::from_secs(s)).unwrap_or(Timestamp::MIN))
        }
        (None, None) => None,
    };
    Ok(LogOptions {
        follow: flag("follow")?,
        previous: flag("previous")?,
        timestamps: flag("timestamps")?,
        since,
        tail_lines,
        limit_bytes,
        streams,
    })
}

/// The runtime id in a status `containerID` (`containerd://abc` -> `abc`).
fn runtime_id(container_id: &str) -> &str {
    container_id.split_once("://").map_or(container_id, |(_, id)| id)
}

fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let s = pod.status.as_ref()?;
    [&s.container_statuses, &s.init_container_statuses, &s.ephemeral_container_statuses]
        .into_iter()
        .flat_map(|l| l.iter().flatten())
        .find(|c| c.name == container)
}

/// Which container instance the logs come from, by the pod's status (upstream
/// `validateContainerLogStatus`); the error is the 400 message.
fn container_to_read(pod: &Pod, container: &str, previous: bool) -> std::result::Result<String, String> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let Some(status) = status_of(pod, container) else {
        return Err(format!("container {container:?} in pod {name:?} is not available"));
    };
    let state = status.state.clone().unwrap_or_default();
    let last_terminated = status.last_state.as_ref().and_then(|l| l.terminated.as_ref());
    let last_id = last_terminated.and_then(|t| t.container_id.as_deref()).filter(|id| !id.is_empty());
    let terminated_err = || format!("container {container:?} in pod {name:?} is terminated");
    let id = if previous {
        last_id
            .ok_or_else(|| format!("previous terminated container {container:?} in pod {name:?} not found"))?
    } else if state.running.is_some() {
        status.container_id.as_deref().unwrap_or("")
    } else if let Some(t) = &state.terminated {
        match t.container_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => last_id.ok_or_else(terminated_err)?,
        }
    } else if last_terminated.is_some() {
        last_id.ok_or_else(terminated_err)?
    } else if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("");
        let why = match reason {
            "ErrImagePull" => "image can't be pulled",
            "ImagePullBackOff" => "trying and failing to pull image",
            r => r,
        };
        return Err(format!("container {container:?} in pod {name:?} is waiting to start: {why}"));
    } else {
        return Err(format!("container {container:?} in pod {name:?} is waiting to start - no logs yet"));
    };
    Ok(runtime_id(id).to_owned())
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`.
pub(super) async fn container_logs<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    req: Request<Body>,
) -> Response<Body> {
    match logs(shared, namespace, name, container, req).await {
        Ok(resp) => resp,
        Err(reject) => reject.into(),
    }
}

async fn logs<R: Runtime>(
    shared: Arc<Shared<R>>,
    namespace: String,
    name: String,
    container: String,
    req: Request<Body>,
) -> std::result::Result<Response<Body>, Reject> {
    let opts = log_options(&query_pairs(req.uri()), Timestamp::now())?;
    let pod = find_pod(&shared, &namespace, &name, None, || format!("pod {name:?} does not exist")).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let in_spec = spec.containers.iter().map(|c| &c.name).any(|n| *n == container)
        || spec.init_containers.iter().flatten().any(|c| c.name == container)
        || spec.ephemeral_containers.iter().flatten().any(|c| c.name == container);
    if !in_spec {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {name:?}"),
        ));
    }
    let bad = |m: String| Reject::new(StatusCode::BAD_REQUEST, m);
    let id = container_to_read(&pod, &container, opts.previous).map_err(bad)?;
    let status = shared
        .runtime
        .container_status(&id)
        .await
        .map_err(|e| bad(format!("failed to get container status {id:?}: {e}")))?;
    let path = log_file(&shared, &pod, &status.log_path);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| bad(format!("failed to open log file {:?}: {e}", path.display().to_string())))?;

    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let follower = Follower { shared: shared.clone(), id, opts, path };
    tokio::spawn(follower.run(file, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// The host path of a container's log: the runtime's `log_path`, relative to the pod's log
/// directory `<pod_log_dir>/<namespace>_<name>_<uid>` unless absolute.
fn log_file<R>(shared: &Shared<R>, pod: &Pod, log_path: &str) -> PathBuf {
    if FsPath::new(log_path).is_absolute() {
        return PathBuf::from(log_path);
    }
    crate::pod::sandbox::log_directory(&shared.config, pod).join(log_path)
}

/// One CRI log line: `<time> <stream> <tags> <content>`.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    time: &'a [u8],
    stream: &'a [u8],
    partial: bool,
    content: &'a [u8],
}

fn parse_entry(line: &[u8]) -> Option<Entry<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = fields.next()?;
    let stream = fields.next()?;
    let tags = fields.next()?;
    let content = fields.next().unwrap_or(b"");
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    Some(Entry { time, stream, partial, content })
}

/// Formats entries into the response, line by line.
#[derive(Debug)]
struct Writer {
    opts: LogOptions,
    /// Bytes still allowed by `limitBytes`.
    budget: Option<u64>,
    /// Whether the next entry starts a new line (gets the timestamp prefix).
    line_start: bool,
    out: Vec<u8>,
}

impl Writer {
    fn new(opts: LogOptions) -> Writer {
        let budget = opts.limit_bytes.map(|l| u64::try_from(l).unwrap_or(0));
        Writer { opts, budget, line_start: true, out: Vec::new() }
    }

    fn exhausted(&self) -> bool {
        self.budget == Some(0)
    }

    /// Appends one file line (without effect when it is malformed, filtered or over budget).
    fn line(&mut self, raw: &[u8]) {
        let Some(e) = parse_entry(raw) else { return };
        let wanted = match self.opts.streams {
            Streams::All => true,
            Streams::Stdout => e.stream == b"stdout",
            Streams::Stderr => e.stream == b"stderr",
        };
        if !wanted {
            return;
        }
        if let Some(since) = self.opts.since {
            let at = std::str::from_utf8(e.time).ok().and_then(|t| t.parse::<Timestamp>().ok());
            match at {
                Some(at) if at >= since => {}
                _ => return,
            }
        }
        let mut piece = Vec::with_capacity(e.content.len() + 40);
        if self.opts.timestamps && self.line_start {
            piece.extend_from_slice(e.time);
            piece.push(b' ');
        }
        piece.extend_from_slice(e.content);
        if !e.partial {
            piece.push(b'\n');
        }
        self.line_start = !e.partial;
        if let Some(budget) = self.budget.as_mut() {
            let keep = usize::try_from(*budget).unwrap_or(usize::MAX).min(piece.len());
            piece.truncate(keep);
            *budget -= keep as u64;
        }
        self.out.extend_from_slice(&piece);
    }

    fn take(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.out)))
    }
}

/// Counts the complete lines of the file from its current position.
async fn count_lines(file: &mut tokio::fs::File) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// Reads one container's log file into the response channel, following it when asked.
struct Follower<R> {
    shared: Arc<Shared<R>>,
    id: String,
    opts: LogOptions,
    path: PathBuf,
}

impl<R: Runtime> Follower<R> {
    async fn run(self, file: tokio::fs::File, tx: mpsc::Sender<Bytes>) {
        if let Err(e) = self.pump(file, &tx).await {
            debug!(error = %e, path = %self.path.display(), "reading a container log failed");
        }
    }

    async fn running(&self) -> bool {
        match self.shared.runtime.container_status(&self.id).await {
            Ok(s) => s.state == ContainerState::ContainerRunning as i32,
            Err(_) => false,
        }
    }

    async fn pump(&self, mut file: tokio::fs::File, tx: &mpsc::Sender<Bytes>) -> std::io::Result<()> {
        let mut skip = 0u64;
        if let Some(tail) = self.opts.tail_lines {
            let total = count_lines(&mut file).await?;
            skip = total.saturating_sub(u64::try_from(tail).unwrap_or(0));
            file.rewind().await?;
        }
        let mut reader = BufReader::new(file);
        let mut writer = Writer::new(self.opts.clone());
        let mut pending = Vec::new();
        let mut last_round = !self.opts.follow;
        loop {
            // Drain what is in the file now; a line still being written stays pending.
            loop {
                let n = reader.read_until(b'\n', &mut pending).await?;
                if n == 0 || !pending.ends_with(b"\n") {
                    break;
                }
                if skip > 0 {
                    skip -= 1;
                } else {
                    writer.line(&pending);
                }
                pending.clear();
                if writer.out.len() >= CHUNK || writer.exhausted() {
                    if let Some(chunk) = writer.take() {
                        if tx.send(chunk).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                if writer.exhausted() {
                    return Ok(());
                }
            }
            if let Some(chunk) = writer.take() {
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
            if last_round {
                if !pending.is_empty() && skip == 0 {
                    writer.line(&pending);
                    if let Some(chunk) = writer.take() {
                        let _ = tx.send(chunk).await;
                    }
                }
                return Ok(());
            }
            if !self.running().await {
                // One more pass picks up what was written before the container stopped.
                last_round = true;
                continue;
            }
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Ok(()),
                _ = tx.closed() => return Ok(()),
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(&format!("/x?{q}").parse().unwrap())
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:10Z".parse().unwrap()
    }

    #[test]
    fn log_options_follow_pod_log_options_validation() {
        let o =
            log_options(&pairs("follow=true&timestamps=1&tailLines=2&limitBytes=10&sinceSeconds=5"), now())
                .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(2), Some(10)));
        assert_eq!(o.since, Some("2026-01-01T00:00:05Z".parse().unwrap()));
        assert_eq!(log_options(&pairs("tail=all"), now()).unwrap().tail_lines, None);
        assert_eq!(log_options(&pairs("tail=3"), now()).unwrap().tail_lines, Some(3));
        for (q, status) in [
            ("follow=maybe", StatusCode::BAD_REQUEST),
            ("tailLines=x", StatusCode::BAD_REQUEST),
            ("sinceTime=yesterday", StatusCode::BAD_REQUEST),
            ("tailLines=-1", StatusCode::UNPROCESSABLE_ENTITY),
            ("limitBytes=0", StatusCode::UNPROCESSABLE_ENTITY),
            ("sinceSeconds=0", StatusCode::UNPROCESSABLE_ENTITY),
            ("sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            assert_eq!(log_options(&pairs(q), now()).unwrap_err().status(), status, "{q}");
        }
    }

    #[test]
    fn cri_lines_parse_and_partial_lines_join_under_one_timestamp() {
        let e = parse_entry(b"2026-01-01T00:00:00.5Z stderr P:x part one\n").unwrap();
        assert_eq!((e.stream, e.partial, e.content), (&b"stderr"[..], true, &b"part one"[..]));
        assert!(parse_entry(b"garbage").is_none());
        let opts = log_options(&pairs("timestamps=true"), now()).unwrap();
        let mut w = Writer::new(opts);
        w.line(b"2026-01-01T00:00:01Z stdout P hel");
        w.line(b"2026-01-01T00:00:02Z stdout F lo\n");
        w.line(b"2026-01-01T00:00:03Z stderr F \n");
        assert_eq!(w.take().unwrap(), "2026-01-01T00:00:01Z hello\n2026-01-01T00:00:03Z \n");
    }

    #[test]
    fn the_writer_filters_by_time_and_stream_and_stops_at_the_byte_limit() {
        let mut w =
            Writer::new(log_options(&pairs("sinceTime=2026-01-01T00:00:02Z&limitBytes=6"), now()).unwrap());
        for l in [
            "2026-01-01T00:00:01Z stdout F old",
            "2026-01-01T00:00:02Z stdout F new",
            "2026-01-01T00:00:03Z stdout F more",
        ] {
            w.line(l.as_bytes());
        }
        assert_eq!(w.take().unwrap(), "new\nmo");
        assert!(w.exhausted());
        let mut w = Writer::new(log_options(&pairs("stream=Stderr"), now()).unwrap());
        w.line(b"2026-01-01T00:00:01Z stdout F out");
        w.line(b"2026-01-01T00:00:01Z stderr F err");
        assert_eq!(w.take().unwrap(), "err\n");
    }
}
