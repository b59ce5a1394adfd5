//! Pods: one watch of the pods bound to this node, one worker per pod (see [`worker`]), and the
//! housekeeping that removes sandboxes of pods the API no longer has.

mod backoff;
mod container;
pub(crate) mod env;
mod probe;
pub(crate) mod sandbox;
mod status;
pub(crate) mod view;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use corten_cri::{api, Runtime};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::node::Resources;
use crate::{Config, Result};

/// CRI label: the pod's name.
pub(crate) const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// CRI label: the pod's namespace.
pub(crate) const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// CRI label: the pod's uid (how the kubelet finds what belongs to a pod).
pub(crate) const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// CRI label: the container's name in the pod spec.
pub(crate) const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// CRI annotation: how many times the container was restarted before this instance.
pub(crate) const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// CRI annotation: the pod spec's image of the container (a changed image restarts it).
pub(crate) const ANNOTATION_IMAGE: &str = "io.corten.container.image";
/// CRI annotation: the host file behind the container's termination message path.
pub(crate) const ANNOTATION_TERMINATION_FILE: &str = "io.corten.container.terminationMessageFile";

/// What every pod worker shares.
pub(crate) struct Context<R> {
    pub client: kube::Client,
    pub runtime: R,
    pub config: Config,
    pub host_ip: IpAddr,
    pub allocatable: Arc<Resources>,
    pub runtime_name: String,
    /// Publishes the pods' events (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`, ...).
    pub recorder: Recorder,
}

impl<R> std::fmt::Debug for Context<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("node", &self.config.node_name).finish_non_exhaustive()
    }
}

impl<R> Context<R> {
    pub(crate) fn new(
        client: kube::Client,
        runtime: R,
        config: Config,
        host_ip: IpAddr,
        allocatable: Arc<Resources>,
        runtime_name: String,
    ) -> Context<R> {
        let reporter = Reporter { controller: "kubelet".into(), instance: Some(config.node_name.clone()) };
        let recorder = Recorder::new(client.clone(), reporter);
        Context { client, runtime, config, host_ip, allocatable, runtime_name, recorder }
    }
}

struct WorkerHandle {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

/// Publishes an event about `pod` (failures to publish are only logged).
pub(crate) async fn event<R>(ctx: &Context<R>, pod: &Pod, warning: bool, reason: &str, note: String) {
    let ev = KubeEvent {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pod.object_ref(&())).await {
        debug!(error = %e, pod = %key(pod), reason, "publishing an event failed");
    }
}

/// `namespace/name` of a pod, for logs.
pub(crate) fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Watches the pods bound to this node and runs a worker per pod until `shutdown`.
pub(crate) async fn run<R: Runtime>(ctx: Context<R>, shutdown: CancellationToken) -> Result<()> {
    let ctx = Arc::new(ctx);
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let mut events =
        watcher::watcher(pods, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(uid) = done_rx.recv() => {
                if workers.get(&uid).is_some_and(|w| w.task.is_finished()) {
                    workers.remove(&uid);
                }
            }
            _ = housekeeping.tick(), if synced => remove_orphans(&ctx, &workers).await,
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => warn!(error = %e, "watching the pods of this node failed"),
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    dispatch(&ctx, &mut workers, &done_tx, pod, &shutdown);
                }
                Some(Ok(Event::Apply(pod))) => dispatch(&ctx, &mut workers, &done_tx, pod, &shutdown),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(w) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                        w.tx.send_replace(None);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    let seen = listing.take().unwrap_or_default();
                    for (uid, w) in &workers {
                        if !seen.contains(uid) {
                            w.tx.send_replace(None);
                        }
                    }
                    if !synced {
                        synced = true;
                        remove_orphans(&ctx, &workers).await;
                    }
                }
            },
        }
    }
    for (_, w) in workers {
        if let Err(e) = w.task.await {
            warn!(error = %e, "a pod worker failed");
        }
    }
    Ok(())
}

fn dispatch<R: Runtime>(
    ctx: &Arc<Context<R>>,
    workers: &mut HashMap<String, WorkerHandle>,
    done: &mpsc::UnboundedSender<String>,
    pod: Pod,
    shutdown: &CancellationToken,
) {
    let Some(uid) = pod.metadata.uid.clone() else { return };
    let pod = Arc::new(pod);
    if let Some(w) = workers.get(&uid).filter(|w| !w.task.is_finished()) {
        w.tx.send_replace(Some(pod));
        return;
    }
    debug!(pod = %key(&pod), "starting a pod worker");
    let (tx, rx) = watch::channel(Some(pod));
    let worker = worker::Worker::new(ctx.clone(), uid.clone(), rx);
    let done = done.clone();
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        worker.run(shutdown).await;
        let _ = done.send(uid);
    });
    workers.insert(pod_uid(&tx), WorkerHandle { tx, task });
}

fn pod_uid(tx: &watch::Sender<Option<Arc<Pod>>>) -> String {
    tx.borrow().as_ref().and_then(|p| p.metadata.uid.clone()).unwrap_or_default()
}

/// Stops and removes sandboxes (and their containers and pod directories) of pods that have
/// no worker: pods deleted while the kubelet was down.
async fn remove_orphans<R: Runtime>(ctx: &Context<R>, workers: &HashMap<String, WorkerHandle>) {
    let sandboxes = match ctx.runtime.list_pod_sandbox(None).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "listing sandboxes failed");
            return;
        }
    };
    let known: HashSet<&str> = workers.keys().map(String::as_str).collect();
    for sb in sandboxes {
        let Some(uid) = sb.labels.get(LABEL_POD_UID) else { continue };
        if known.contains(uid.as_str()) {
            continue;
        }
        let name = sb.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default();
        info!(pod = %name, sandbox = %sb.id, "removing the sandbox of a pod that no longer exists");
        if let Err(e) = remove_sandbox(&ctx.runtime, &sb.id, 0).await {
            warn!(error = %e, sandbox = %sb.id, "removing an orphaned sandbox failed");
        }
    }
    let containers = ctx.runtime.list_containers(None).await.unwrap_or_default();
    for c in containers {
        if c.labels.get(LABEL_POD_UID).is_some_and(|uid| !known.contains(uid.as_str())) {
            let _ = ctx.runtime.stop_container(&c.id, 0).await;
            if let Err(e) = ctx.runtime.remove_container(&c.id).await {
                warn!(error = %e, container = %c.id, "removing an orphaned container failed");
            }
        }
    }
    crate::volumes::remove_orphaned_pod_dirs(&ctx.config.root_dir, &known);
}

/// Stops every container of the sandbox (`timeout` seconds of grace), removes them and it.
pub(crate) async fn remove_sandbox<R: Runtime>(rt: &R, id: &str, timeout: i64) -> Result<()> {
    let filter = api::ContainerFilter { pod_sandbox_id: id.to_string(), ..Default::default() };
    let containers = rt.list_containers(Some(filter)).await?;
    for c in &containers {
        rt.stop_container(&c.id, timeout).await?;
    }
    rt.stop_pod_sandbox(id).await?;
    for c in &containers {
        rt.remove_container(&c.id).await?;
    }
    rt.remove_pod_sandbox(id).await?;
    Ok(())
}
