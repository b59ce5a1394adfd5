//! The control loops `corten server` runs against its own API: the controllers and the scheduler,
//! each a plain API client with its own client certificate, over loopback HTTPS exactly as a
//! remote client (ARCHITECTURE rule 2), each under leader election so that of several servers
//! exactly one runs it. Also the credential of the embedded agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Error, Result};

/// How long the client certificates of the control loops are valid; re-minted on every start.
const COMPONENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where the embedded agent finds its node credential, relative to the data dir.
pub const AGENT_KUBECONFIG: &str = "agent/kubelet.kubeconfig";

/// Where the embedded agent finds its kubelet serving certificate (`kubelet.crt`), its key
/// (`kubelet.key`, mode 0600) and the cluster CA that kubelet clients must chain to (`ca.crt`),
/// relative to the data dir.
pub const AGENT_TLS_DIR: &str = "agent/tls";

/// The user the API server is towards kubelets (upstream's `kube-apiserver-kubelet-client`).
const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The API server's TLS client towards kubelets: a fresh `kube-apiserver-kubelet-client`
/// certificate in `system:masters`, trusting only the cluster CA.
pub(crate) fn kubelet_client_tls(
    pki: &corten_pki::ClusterPki,
) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let pki_err = |source| Error::Pki { path: pki.dir().to_path_buf(), source };
    let (cert, key) = pki
        .issue_client_cert(KUBELET_CLIENT_USER, &["system:masters"], COMPONENT_CERT_VALIDITY)
        .map_err(pki_err)?;
    Ok(std::sync::Arc::new(pki.client_tls_config(&cert, &key).map_err(pki_err)?))
}

/// Writes the embedded agent's kubelet serving certificate for `node_name` (its SANs: the node
/// name, the host name, loopback and every host address) with its key and the cluster CA into
/// `<data-dir>/agent/tls`; returns the directory.
pub(crate) fn write_agent_kubelet_tls(
    pki: &corten_pki::ClusterPki,
    data_dir: &Path,
    node_name: &str,
) -> Result<PathBuf> {
    let dir = data_dir.join(AGENT_TLS_DIR);
    let pki_err = |source| Error::Pki { path: pki.dir().to_path_buf(), source };
    let mut names = corten_pki::host_sans();
    names.push(node_name.to_string());
    let (cert, key) = pki.issue_serving_cert(node_name, &names, COMPONENT_CERT_VALIDITY).map_err(pki_err)?;
    for (file, pem, secret) in [
        ("kubelet.crt", cert.as_str(), false),
        ("kubelet.key", key.as_str(), true),
        ("ca.crt", pki.ca_cert_pem(), false),
    ] {
        let path = dir.join(file);
        corten_pki::files::write_pem(&path, pem, secret)
            .map_err(|source| Error::Kubeconfig { path, source })?;
    }
    Ok(dir)
}

/// A kube client of the API at `url` as `user` in `groups`, with a freshly minted certificate.
pub(crate) async fn component_client(
    pki: &corten_pki::ClusterPki,
    url: &str,
    user: &str,
    groups: &[&str],
) -> Result<kube::Client> {
    let yaml = component_kubeconfig(pki, url, user, groups)?;
    let kubeconfig =
        Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Client { user: user.into(), source: e.into() })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Client { user: user.into(), source: e.into() })?;
    kube::Client::try_from(config).map_err(|e| Error::Client { user: user.into(), source: e.into() })
}

/// A kubeconfig document for `user` in `groups` with a new client certificate.
fn component_kubeconfig(
    pki: &corten_pki::ClusterPki,
    url: &str,
    user: &str,
    groups: &[&str],
) -> Result<String> {
    let pki_err = |source| Error::Pki { path: pki.dir().to_path_buf(), source };
    let (cert, key) = pki.issue_client_cert(user, groups, COMPONENT_CERT_VALIDITY).map_err(pki_err)?;
    corten_pki::kubeconfig_yaml(url, pki.ca_cert_pem(), &cert, &key, user).map_err(pki_err)
}

/// Writes the embedded agent's kubeconfig (`system:node:<node>` in `system:nodes`) into the data
/// dir; returns its path.
pub(crate) fn write_agent_kubeconfig(
    pki: &corten_pki::ClusterPki,
    data_dir: &Path,
    url: &str,
    node_name: &str,
) -> Result<PathBuf> {
    let path = data_dir.join(AGENT_KUBECONFIG);
    let user = format!("system:node:{node_name}");
    let pki_err = |source| Error::Pki { path: pki.dir().to_path_buf(), source };
    let (cert, key) =
        pki.issue_client_cert(&user, &["system:nodes"], COMPONENT_CERT_VALIDITY).map_err(pki_err)?;
    corten_pki::write_kubeconfig(&path, url, pki.ca_cert_pem(), &cert, &key, &user)
        .map_err(|source| Error::Kubeconfig { path: path.clone(), source })?;
    Ok(path)
}

/// Starts the controllers and the scheduler under leader election; they stop when `shutdown` fires.
pub(crate) async fn start_control_loops(
    pki: &corten_pki::ClusterPki,
    url: &str,
    identity: &str,
    shutdown: &CancellationToken,
) -> Result<JoinSet<()>> {
    let mut loops = JoinSet::new();

    let client = component_client(pki, url, "system:kube-controller-manager", &[]).await?;
    let config =
        corten_controllers::Config { root_ca_pem: pki.ca_cert_pem().to_string(), ..Default::default() };
    let (id, token) = (identity.to_string(), shutdown.clone());
    loops.spawn(async move {
        let lease_client = client.clone();
        let elected = corten_controllers::leader::run_as_leader(
            lease_client,
            "kube-controller-manager",
            &id,
            token,
            |lead| {
                let (client, config) = (client.clone(), config.clone());
                async move {
                    if let Err(e) = corten_controllers::run(client, config, lead).await {
                        warn!(error = %e, "the controllers stopped");
                    }
                }
            },
        )
        .await;
        if let Err(e) = elected {
            warn!(error = %e, "leader election of the controllers failed");
        }
    });

    let client = component_client(pki, url, "system:kube-scheduler", &[]).await?;
    let (id, token) = (identity.to_string(), shutdown.clone());
    loops.spawn(async move {
        let lease_client = client.clone();
        let elected =
            corten_controllers::leader::run_as_leader(lease_client, "kube-scheduler", &id, token, |lead| {
                let client = client.clone();
                async move {
                    if let Err(e) =
                        corten_scheduler::run(client, corten_scheduler::Config::default(), lead).await
                    {
                        warn!(error = %e, "the scheduler stopped");
                    }
                }
            })
            .await;
        if let Err(e) = elected {
            warn!(error = %e, "leader election of the scheduler failed");
        }
    });
    info!(identity, "controllers and scheduler started (leader-elected)");
    Ok(loops)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_agent_gets_a_kubelet_serving_certificate_its_key_and_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(tmp.path().join("tls"))).unwrap();
        let dir = write_agent_kubelet_tls(&pki, tmp.path(), "node-1").unwrap();
        assert_eq!(dir, tmp.path().join(AGENT_TLS_DIR));
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("kubelet.key"), 0o600);
        assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), pki.ca_cert_pem());
        assert!(std::fs::read_to_string(dir.join("kubelet.crt"))
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(kubelet_client_tls(&pki).is_ok());
    }
}
