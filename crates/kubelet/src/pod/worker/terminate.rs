//! Ending a pod: stopping what runs of a finished pod, and terminating a deleted one (preStop
//! hooks, stop within the grace period, remove containers, sandboxes and the pod directory,
//! then delete the pod object with grace 0).

use std::time::Duration;

use corten_cri::Runtime;
use k8s_openapi::api::core::v1::{LifecycleHandler, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::time::Instant;
use tracing::{info, warn};

use super::super::probe;
use super::super::view::{ContainerView, View};
use super::{event, key, remove_sandbox, Worker};
use crate::volumes;

impl<R: Runtime> Worker<R> {
    pub(super) async fn stop_pod(&mut self, view: &View) -> crate::Result<()> {
        let grace = self.grace_seconds();
        for c in view.containers.iter().filter(|c| c.running()) {
            self.ctx.runtime.stop_container(&c.id, grace).await?;
        }
        for sb in view.sandboxes.iter().filter(|s| s.ready) {
            self.ctx.runtime.stop_pod_sandbox(&sb.id).await?;
        }
        Ok(())
    }

    pub(super) async fn pre_stop(
        &self,
        c: &ContainerView,
        hook: &LifecycleHandler,
        ip: Option<&str>,
        timeout: Duration,
    ) {
        let Some((spec, _)) = self.spec_container(&c.name) else { return };
        if let Err(e) = probe::run_hook(&self.ctx.runtime, &spec, &c.id, hook, ip, timeout).await {
            warn!(error = %e, pod = %key(&self.pod), container = %c.name, "preStop hook failed");
        }
    }

    /// preStop hooks, stop with the grace period, remove containers and sandboxes, remove the
    /// pod directory, then delete the pod object (grace 0) if the API still has it.
    pub(super) async fn terminate(&mut self, view: &View) -> crate::Result<()> {
        let grace = Duration::from_secs(self.grace_seconds().max(0) as u64);
        let deadline = Instant::now() + grace;
        let ip = view.ready_sandbox().and_then(|s| s.ips.first().cloned());
        let running: Vec<&ContainerView> = view.containers.iter().filter(|c| c.running()).collect();
        if !running.is_empty() {
            info!(pod = %key(&self.pod), grace_seconds = grace.as_secs(), "stopping the pod's containers");
        }
        if !self.gone {
            for c in &running {
                event(&self.ctx, &self.pod, false, "Killing", format!("Stopping container {}", c.name)).await;
            }
        }
        let this = &*self;
        let hooks = running.iter().filter_map(|c| {
            let (spec, _) = this.spec_container(&c.name)?;
            let hook = spec.lifecycle.and_then(|l| l.pre_stop)?;
            let ip = ip.clone();
            Some(async move {
                this.pre_stop(c, &hook, ip.as_deref(), deadline.saturating_duration_since(Instant::now()))
                    .await
            })
        });
        futures::future::join_all(hooks).await;
        let remaining = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
        let rt = &self.ctx.runtime;
        futures::future::try_join_all(running.iter().map(|c| rt.stop_container(&c.id, remaining))).await?;
        for sb in &view.sandboxes {
            remove_sandbox(rt, &sb.id, 0).await?;
        }
        for c in &view.containers {
            rt.remove_container(&c.id).await?;
        }
        volumes::remove_pod_dir(&self.ctx.config.root_dir, &self.uid);
        if !self.gone {
            let pods: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                self.pod.metadata.namespace.as_deref().unwrap_or(""),
            );
            let name = self.pod.metadata.name.clone().unwrap_or_default();
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match pods.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        info!(pod = %key(&self.pod), "pod terminated");
        Ok(())
    }
}
