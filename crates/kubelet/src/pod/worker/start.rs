//! Starting a container: the image (by pull policy, with pull back-off), volumes, environment,
//! `/etc/hosts`, the termination-message file and log directory, then `CreateContainer` and
//! `StartContainer`. Failures become the container's waiting reason.

use corten_cri::{api, Runtime};
use k8s_openapi::api::core::v1::Container;
use tokio::time::Instant;
use tracing::{info, warn};

use super::super::container::{container_config, termination_file, ContainerInputs};
use super::super::env::container_env;
use super::super::event;
use super::super::probe;
use super::super::sandbox::{hostname, sandbox_config};
use super::super::status::Waiting;
use super::super::view::{SandboxView, View};
use super::{instant_of, key, Start, Worker};
use crate::volumes::{self, PodFacts};
use crate::Error;

/// The default pull policy: `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub(crate) fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.clone().filter(|p| !p.is_empty()) {
        return p;
    }
    let image = c.image.as_deref().unwrap_or("");
    let name = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') { Some("digest") } else { name.split_once(':').map(|(_, t)| t) };
    match tag {
        None | Some("latest") => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

fn rpc_message(e: &corten_cri::Error) -> String {
    match e {
        corten_cri::Error::Rpc { status, .. } => status.message().to_string(),
        other => other.to_string(),
    }
}

fn config_message(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        Error::Kube(kube::Error::Api(s)) => s.message.clone(),
        other => {
            let mut m = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                m.push_str(": ");
                m.push_str(&s.to_string());
                src = s.source();
            }
            m
        }
    }
}

impl<R: Runtime> Worker<R> {
    pub(super) async fn create_sandbox(&mut self, attempt: u32) -> crate::Result<()> {
        let config = sandbox_config(&self.ctx.config, &self.pod, attempt);
        std::fs::create_dir_all(&config.log_directory).map_err(Error::io(&config.log_directory))?;
        let id = self.ctx.runtime.run_pod_sandbox(config, self.ctx.config.runtime_handler.clone()).await?;
        info!(pod = %key(&self.pod), sandbox = %id, "sandbox created");
        Ok(())
    }

    pub(super) async fn ensure_image(&mut self, c: &Container) -> Result<String, Waiting> {
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err(Waiting {
                reason: "InvalidImageName".into(),
                message: "the container has no image".into(),
            });
        }
        let spec = api::ImageSpec { image: image.clone(), ..Default::default() };
        let present = match self.ctx.runtime.image_status(spec.clone()).await {
            Ok(p) => p.is_some(),
            Err(e) => return Err(Waiting { reason: "ErrImagePull".into(), message: rpc_message(&e) }),
        };
        match pull_policy(c).as_str() {
            "Never" if !present => {
                return Err(Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: format!("Container image {image:?} is not present with pull policy of Never"),
                })
            }
            "Never" => return Ok(image),
            "IfNotPresent" if present => {
                let note = format!("Container image {image:?} already present on machine");
                event(&self.ctx, &self.pod, false, "Pulled", note).await;
                return Ok(image);
            }
            _ => {}
        }
        if let Some(at) = self.pull_failed_at.get(&image) {
            if self.pull_backoff.in_backoff_since(&image, *at, Instant::now()).is_some() {
                return Err(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!("Back-off pulling image {image:?}"),
                });
            }
        }
        event(&self.ctx, &self.pod, false, "Pulling", format!("Pulling image {image:?}")).await;
        let started = Instant::now();
        match self.ctx.runtime.pull_image(spec, None, None).await {
            Ok(_) => {
                let note = format!("Successfully pulled image {image:?} in {:?}", started.elapsed());
                event(&self.ctx, &self.pod, false, "Pulled", note).await;
                self.pull_backoff.reset(&image);
                self.pull_failed_at.remove(&image);
                Ok(image)
            }
            Err(e) => {
                let now = Instant::now();
                self.pull_backoff.next(&image, now);
                self.pull_failed_at.insert(image.clone(), now);
                warn!(error = %e, pod = %key(&self.pod), image = %image, "image pull failed");
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: format!("failed to pull and unpack image {image:?}: {}", rpc_message(&e)),
                })
            }
        }
    }

    /// Starts one container; false (with the waiting reason recorded) when it could not.
    pub(super) async fn start(&mut self, view: &View, sandbox: &SandboxView, s: &Start) -> bool {
        let Some((c, _)) = self.spec_container(&s.name) else { return false };
        if let Some(latest) = view.latest(&s.name).filter(|l| s.restart_count > 0 && l.exited()) {
            self.crash_backoff.next(&s.name, instant_of(latest.finished_at));
        }
        match self.create_and_start(view, sandbox, &c, s.restart_count).await {
            Ok(id) => {
                info!(pod = %key(&self.pod), container = %c.name, id = %id, restart_count = s.restart_count, "container started");
                self.waiting.remove(&c.name);
                self.retry_at.remove(&c.name);
                true
            }
            Err(w) => {
                let changed = self.waiting.get(&c.name).is_none_or(|old| old.reason != w.reason);
                if changed {
                    let (reason, note) = match w.reason.as_str() {
                        "ImagePullBackOff" => ("BackOff", w.message.clone()),
                        _ => ("Failed", format!("Error: {}", w.message)),
                    };
                    event(&self.ctx, &self.pod, reason == "Failed", reason, note).await;
                }
                // Failed starts are retried after half the back-off, so a pull in back-off
                // shows `ImagePullBackOff` between the `ErrImagePull` attempts.
                self.retry_at.insert(c.name.clone(), Instant::now() + self.ctx.config.backoff_base / 2);
                warn!(pod = %key(&self.pod), container = %c.name, reason = %w.reason, message = %w.message, "container not started");
                self.waiting.insert(c.name.clone(), w);
                false
            }
        }
    }

    pub(super) async fn create_and_start(
        &mut self,
        view: &View,
        sandbox: &SandboxView,
        c: &Container,
        restart_count: i32,
    ) -> Result<String, Waiting> {
        let image = self.ensure_image(c).await?;
        let config_error =
            |e: Error| Waiting { reason: "CreateContainerConfigError".into(), message: config_message(&e) };
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let pod_ips = if host_network { vec![self.ctx.host_ip.to_string()] } else { sandbox.ips.clone() };
        let facts = PodFacts {
            pod: &self.pod,
            host_ip: self.ctx.host_ip,
            pod_ips: &pod_ips,
            allocatable: &self.ctx.allocatable,
        };
        self.volumes = volumes::setup(&self.ctx.client, &self.ctx.config.root_dir, &facts)
            .await
            .map_err(|e| Waiting { reason: "ContainerCreating".into(), message: config_message(&e) })?;
        let env =
            container_env(&self.ctx.client, &self.pod, c, self.ctx.host_ip, &pod_ips, &self.ctx.allocatable)
                .await
                .map_err(config_error)?;
        let pod_dir = volumes::pod_dir(&self.ctx.config.root_dir, &self.uid);
        let term = termination_file(&pod_dir, &c.name, restart_count);
        if let Some(parent) = term.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent)).map_err(config_error)?;
        }
        std::fs::write(&term, b"").map_err(Error::io(&term)).map_err(config_error)?;
        let etc_hosts = if host_network {
            None
        } else {
            let domain = &self.ctx.config.cluster_domain;
            Some(
                volumes::write_etc_hosts(
                    &self.ctx.config.root_dir,
                    &self.pod,
                    pod_ips.first().map(String::as_str),
                    &hostname(&self.pod),
                    domain,
                )
                .map_err(config_error)?,
            )
        };
        let inputs = ContainerInputs {
            restart_count,
            env,
            volumes: &self.volumes,
            etc_hosts: etc_hosts.as_deref(),
            termination_file: &term,
            image,
        };
        let config = container_config(&self.pod, c, inputs)
            .map_err(|m| Waiting { reason: "CreateContainerConfigError".into(), message: m })?;
        // Keep the newest old instance (the lastState); remove the older ones.
        for old in view.containers.iter().filter(|x| x.name == c.name && x.exited()).skip(1) {
            if let Err(e) = self.ctx.runtime.remove_container(&old.id).await {
                warn!(error = %e, container = %old.id, "removing an old container failed");
            }
        }
        let sandbox_cfg = sandbox_config(&self.ctx.config, &self.pod, sandbox.attempt);
        let log_dir = std::path::Path::new(&sandbox_cfg.log_directory).join(&c.name);
        std::fs::create_dir_all(&log_dir).map_err(Error::io(&log_dir)).map_err(config_error)?;
        let rt = &self.ctx.runtime;
        let id = rt
            .create_container(&sandbox.id, config, sandbox_cfg)
            .await
            .map_err(|e| Waiting { reason: "CreateContainerError".into(), message: rpc_message(&e) })?;
        event(&self.ctx, &self.pod, false, "Created", format!("Created container: {}", c.name)).await;
        rt.start_container(&id)
            .await
            .map_err(|e| Waiting { reason: "RunContainerError".into(), message: rpc_message(&e) })?;
        event(&self.ctx, &self.pod, false, "Started", format!("Started container {}", c.name)).await;
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let ip = sandbox.ips.first().map(String::as_str);
            let timeout = std::time::Duration::from_secs(self.grace_seconds().max(1) as u64);
            if let Err(m) = probe::run_hook(rt, c, &id, hook, ip, timeout).await {
                let message = format!("PostStartHook failed: {m}");
                event(&self.ctx, &self.pod, true, "FailedPostStartHook", message.clone()).await;
                if let Err(e) = rt.stop_container(&id, self.grace_seconds()).await {
                    warn!(error = %e, container = %id, "stopping a container whose postStart hook failed");
                }
                return Err(Waiting { reason: "PostStartHookError".into(), message });
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_like_the_api_server() {
        let c = |image: &str| Container { name: "a".into(), image: Some(image.into()), ..Default::default() };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("registry:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("registry:5000/busybox:1")), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox@sha256:abc")), "IfNotPresent");
    }
}
