//! Liveness, readiness and startup probes: exec (`ExecSync`), `httpGet` and `tcpSocket`, with
//! upstream's delays, periods, timeouts and thresholds. One [`Probes`] per container instance.

use std::time::Duration;

use corten_cri::Runtime;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

/// What a probe says so far.
#[derive(Debug, Clone)]
struct ProbeState {
    successes: i32,
    failures: i32,
    /// The settled result (`None`: not yet settled).
    result: Option<bool>,
    next_due: Instant,
}

impl ProbeState {
    fn new(probe: &Probe, now: Instant) -> ProbeState {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        ProbeState { successes: 0, failures: 0, result: None, next_due: now + delay }
    }

    fn record(&mut self, probe: &Probe, ok: bool, now: Instant) {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next_due = now + period;
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.result = Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.result = Some(false);
            }
        }
    }
}

/// The probes of one running container instance.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
}

/// What the probes want done with the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep it running.
    Keep,
    /// Kill it (liveness or startup failed); the message says which probe.
    Kill(String),
}

impl Probes {
    pub(crate) fn new(c: &Container, now: Instant) -> Probes {
        Probes {
            startup: c.startup_probe.as_ref().map(|p| ProbeState::new(p, now)),
            liveness: c.liveness_probe.as_ref().map(|p| ProbeState::new(p, now)),
            readiness: c.readiness_probe.as_ref().map(|p| ProbeState::new(p, now)),
        }
    }

    /// `started`: no startup probe, or it succeeded.
    pub(crate) fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|s| s.result == Some(true))
    }

    /// `ready`: started and no readiness probe, or it succeeded last.
    pub(crate) fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|s| s.result == Some(true))
    }

    /// Runs the probes that are due.
    pub(crate) async fn run_due<R: Runtime>(
        &mut self,
        rt: &R,
        c: &Container,
        container_id: &str,
        pod_ip: Option<&str>,
    ) -> Verdict {
        let now = Instant::now();
        if let (Some(state), Some(probe)) = (self.startup.as_mut(), c.startup_probe.as_ref()) {
            if state.result != Some(true) {
                if now >= state.next_due {
                    let ok = check(rt, probe, c, container_id, pod_ip).await;
                    state.record(probe, ok, now);
                    if ok {
                        state.result = Some(true);
                    } else if state.result == Some(false) {
                        return Verdict::Kill(format!(
                            "Container {} failed startup probe, will be restarted",
                            c.name
                        ));
                    }
                }
                return Verdict::Keep;
            }
        }
        if let (Some(state), Some(probe)) = (self.liveness.as_mut(), c.liveness_probe.as_ref()) {
            if now >= state.next_due {
                let ok = check(rt, probe, c, container_id, pod_ip).await;
                state.record(probe, ok, now);
                if state.result == Some(false) {
                    return Verdict::Kill(format!(
                        "Container {} failed liveness probe, will be restarted",
                        c.name
                    ));
                }
            }
        }
        if let (Some(state), Some(probe)) = (self.readiness.as_mut(), c.readiness_probe.as_ref()) {
            if now >= state.next_due {
                let ok = check(rt, probe, c, container_id, pod_ip).await;
                state.record(probe, ok, now);
            }
        }
        Verdict::Keep
    }
}

/// Runs a lifecycle hook (exec, httpGet, sleep) against container `id`, at most `timeout`.
pub(crate) async fn run_hook<R: Runtime>(
    rt: &R,
    c: &Container,
    id: &str,
    hook: &LifecycleHandler,
    ip: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        if let Some(exec) = &hook.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            match rt.exec_sync(id, cmd.clone(), timeout.as_secs() as i64).await {
                Ok(r) if r.exit_code == 0 => Ok(()),
                Ok(r) => Err(format!(
                    "command {cmd:?} exited with {}: {}",
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr)
                )),
                Err(e) => Err(format!("command {cmd:?} failed: {e}")),
            }
        } else if let Some(h) = &hook.http_get {
            let host = h.host.clone().or(ip.map(str::to_string)).unwrap_or_else(|| "127.0.0.1".into());
            let port = port(c, &h.port).ok_or_else(|| format!("invalid port {:?}", h.port))?;
            let headers: Vec<(String, String)> =
                h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect();
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            if http_get(&host, port, &path, &headers).await {
                Ok(())
            } else {
                Err(format!("http GET {host}:{port}{path} failed"))
            }
        } else if let Some(s) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            Ok(())
        } else {
            Ok(())
        }
    };
    tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

/// Resolves a port by number or by the name of a container port.
pub(crate) fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok()),
        },
    }
}

/// One HTTP GET; true for a 2xx or 3xx answer.
pub(crate) async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> bool {
    let Ok(mut s) = TcpStream::connect((host, port)).await else { return false };
    let path = if path.is_empty() { "/" } else { path };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < 256 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got);
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (200..400).contains(&code)
}

async fn check<R: Runtime>(rt: &R, probe: &Probe, c: &Container, id: &str, pod_ip: Option<&str>) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let ok = if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        match rt.exec_sync(id, cmd, timeout.as_secs() as i64).await {
            Ok(r) => r.exit_code == 0,
            Err(e) => {
                debug!(error = %e, container = %c.name, "exec probe errored");
                false
            }
        }
    } else if let Some(h) = &probe.http_get {
        let host = h.host.clone().or(pod_ip.map(str::to_string)).unwrap_or_else(|| "127.0.0.1".into());
        let Some(p) = port(c, &h.port) else { return false };
        let headers: Vec<(String, String)> =
            h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect();
        let path = h.path.clone().unwrap_or_default();
        tokio::time::timeout(timeout, http_get(&host, p, &path, &headers)).await.unwrap_or(false)
    } else if let Some(t) = &probe.tcp_socket {
        let host = t.host.clone().or(pod_ip.map(str::to_string)).unwrap_or_else(|| "127.0.0.1".into());
        let Some(p) = port(c, &t.port) else { return false };
        matches!(tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), p))).await, Ok(Ok(_)))
    } else {
        // gRPC probes are not implemented yet: they never fail.
        true
    };
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(probe: serde_json::Value) -> Container {
        serde_json::from_value(
            serde_json::json!({"name": "app", "livenessProbe": probe, "readinessProbe": probe}),
        )
        .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_kills_after_failure_threshold_and_readiness_follows_the_last_result(
    ) -> anyhow::Result<()> {
        let rt = corten_cri::fake::FakeRuntime::new();
        rt.add_image("img");
        let sb = rt.run_pod_sandbox(Default::default(), String::new()).await?;
        let cfg = corten_cri::api::ContainerConfig {
            metadata: Some(corten_cri::api::ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(corten_cri::api::ImageSpec { image: "img".into(), ..Default::default() }),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg, Default::default()).await?;
        let c = container(
            serde_json::json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2}),
        );
        let mut probes = Probes::new(&c, Instant::now());
        assert!(!probes.ready(), "not ready before the first readiness probe");
        assert_eq!(probes.run_due(&rt, &c, &id, None).await, Verdict::Keep);
        assert!(probes.ready());
        rt.set_exec_exit_code("app", 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            probes.run_due(&rt, &c, &id, None).await,
            Verdict::Keep,
            "one failure is below the threshold"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            matches!(probes.run_due(&rt, &c, &id, None).await, Verdict::Kill(m) if m.contains("liveness"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_probes_succeed_on_2xx_and_fail_on_5xx_or_no_listener() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Unavailable\r\n\r\n"] {
                if let Ok((mut s, _)) = listener.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                }
            }
        });
        assert!(http_get("127.0.0.1", port, "/healthz", &[]).await);
        assert!(!http_get("127.0.0.1", port, "/healthz", &[]).await);
        assert!(!http_get("127.0.0.1", port, "/healthz", &[]).await);
        Ok(())
    }
}
