//! What the runtime has for one pod, found by the CRI labels the kubelet puts on everything it
//! creates: that is also how a restarted kubelet adopts what it left running.

use corten_cri::api::{self, ContainerState, PodSandboxState};
use corten_cri::Runtime;

use super::{
    ANNOTATION_IMAGE, ANNOTATION_RESTART_COUNT, ANNOTATION_TERMINATION_FILE, LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
};
use crate::Result;

/// One sandbox of the pod.
#[derive(Debug, Clone)]
pub(crate) struct SandboxView {
    pub id: String,
    pub ready: bool,
    pub ips: Vec<String>,
    pub attempt: u32,
    pub created_at: i64,
}

/// One container instance of the pod.
#[derive(Debug, Clone)]
pub(crate) struct ContainerView {
    pub id: String,
    pub name: String,
    pub restart_count: i32,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub image_ref: String,
    pub termination_file: Option<String>,
    /// The pod spec's image when the container was created.
    pub spec_image: Option<String>,
    /// The log file as the runtime reports it (absolute, or relative to the pod log directory).
    pub log_path: String,
}

impl ContainerView {
    pub(crate) fn running(&self) -> bool {
        self.state == ContainerState::ContainerRunning
    }

    pub(crate) fn exited(&self) -> bool {
        matches!(self.state, ContainerState::ContainerExited | ContainerState::ContainerUnknown)
    }
}

/// Everything of one pod in the runtime, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub sandboxes: Vec<SandboxView>,
    pub containers: Vec<ContainerView>,
}

impl View {
    /// The newest sandbox when it is ready.
    pub(crate) fn ready_sandbox(&self) -> Option<&SandboxView> {
        self.sandboxes.first().filter(|s| s.ready)
    }

    /// The newest instance of the container `name`.
    pub(crate) fn latest(&self, name: &str) -> Option<&ContainerView> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the newest one.
    pub(crate) fn previous(&self, name: &str) -> Option<&ContainerView> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// Whether anything of the pod still runs.
    pub(crate) fn anything_running(&self) -> bool {
        self.sandboxes.iter().any(|s| s.ready) || self.containers.iter().any(ContainerView::running)
    }
}

fn uid_selector(uid: &str) -> std::collections::HashMap<String, String> {
    [(LABEL_POD_UID.to_string(), uid.to_string())].into()
}

/// Reads the sandboxes and containers labelled with the pod's `uid`.
pub(crate) async fn observe<R: Runtime>(rt: &R, uid: &str) -> Result<View> {
    let filter = api::PodSandboxFilter { label_selector: uid_selector(uid), ..Default::default() };
    let mut sandboxes = Vec::new();
    for sb in rt.list_pod_sandbox(Some(filter)).await? {
        let ready = sb.state == PodSandboxState::SandboxReady as i32;
        let mut ips: Vec<String> = Vec::new();
        if ready {
            let network = match rt.pod_sandbox_status(&sb.id).await {
                Ok(st) => st.network,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(n) = network {
                ips = std::iter::once(n.ip).chain(n.additional_ips.into_iter().map(|i| i.ip)).collect();
                ips.retain(|i| !i.is_empty());
            }
        }
        let attempt = sb.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
        sandboxes.push(SandboxView { id: sb.id, ready, ips, attempt, created_at: sb.created_at });
    }
    sandboxes.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));
    let filter = api::ContainerFilter { label_selector: uid_selector(uid), ..Default::default() };
    let mut containers = Vec::new();
    for c in rt.list_containers(Some(filter)).await? {
        let st = match rt.container_status(&c.id).await {
            Ok(st) => st,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let name = c.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_default();
        let restart_count =
            c.annotations.get(ANNOTATION_RESTART_COUNT).and_then(|r| r.parse().ok()).unwrap_or(0);
        containers.push(ContainerView {
            id: c.id,
            name,
            restart_count,
            state: ContainerState::try_from(st.state).unwrap_or(ContainerState::ContainerUnknown),
            exit_code: st.exit_code,
            reason: st.reason,
            message: st.message,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            image_ref: if st.image_ref.is_empty() { st.image_id } else { st.image_ref },
            termination_file: c.annotations.get(ANNOTATION_TERMINATION_FILE).cloned(),
            spec_image: c.annotations.get(ANNOTATION_IMAGE).cloned(),
            log_path: st.log_path,
        });
    }
    containers.sort_by(|a, b| b.restart_count.cmp(&a.restart_count).then(b.created_at.cmp(&a.created_at)));
    Ok(View { sandboxes, containers })
}
