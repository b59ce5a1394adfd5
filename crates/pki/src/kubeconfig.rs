//! Writing kubeconfig files for client certificates.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use crate::files::{self, KEY_MODE};
use crate::{Error, Result};

/// Name of the cluster and context entries.
const NAME: &str = "corten";

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: [Named<'a, Cluster<'a>>; 1],
    users: [Named<'a, User>; 1],
    contexts: [Named<'a, Context<'a>>; 1],
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct Cluster<'a> {
    cluster: ClusterSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterSpec<'a> {
    server: &'a str,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserSpec {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextSpec<'a>,
}

#[derive(Serialize)]
struct ContextSpec<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// Writes a kubeconfig at `path` (mode 0600, atomically, parent directories created) for a client
/// certificate: the document of [`kubeconfig_yaml`].
///
/// The server writes `<data-dir>/admin.kubeconfig` with `https://127.0.0.1:6443` and the admin
/// credential; [`ensure`](crate::ensure) never writes one.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    user: &str,
) -> Result<()> {
    let yaml = kubeconfig_yaml(server_url, ca_pem, client_cert_pem, client_key_pem, user)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::create_dir(parent)?;
    }
    files::write_atomic(path, yaml.as_bytes(), KEY_MODE)
}

/// A kubeconfig document for a client certificate: cluster and context `corten` pointing at
/// `server_url` and trusting `ca_pem`, user entry `user`, current context set. The PEMs are
/// embedded base64-encoded (`*-data` fields).
pub fn kubeconfig_yaml(
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    user: &str,
) -> Result<String> {
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: NAME,
            value: Cluster {
                cluster: ClusterSpec {
                    server: server_url,
                    certificate_authority_data: STANDARD.encode(ca_pem),
                },
            },
        }],
        users: [Named {
            name: user,
            value: User {
                user: UserSpec {
                    client_certificate_data: STANDARD.encode(client_cert_pem),
                    client_key_data: STANDARD.encode(client_key_pem),
                },
            },
        }],
        contexts: [Named { name: NAME, value: Context { context: ContextSpec { cluster: NAME, user } } }],
        current_context: NAME,
    };
    serde_yaml::to_string(&config).map_err(Error::Kubeconfig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_kubeconfig_parses_back_with_the_expected_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("admin.kubeconfig");
        write_kubeconfig(&path, "https://127.0.0.1:6443", "CA PEM", "CERT PEM", "KEY PEM", "admin").unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let decode =
            |v: &serde_yaml::Value| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(config["apiVersion"], "v1");
        assert_eq!(config["kind"], "Config");
        assert_eq!(config["current-context"], "corten");
        let cluster = &config["clusters"][0];
        assert_eq!(cluster["name"], "corten");
        assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(decode(&cluster["cluster"]["certificate-authority-data"]), "CA PEM");
        let user = &config["users"][0];
        assert_eq!(user["name"], "admin");
        assert_eq!(decode(&user["user"]["client-certificate-data"]), "CERT PEM");
        assert_eq!(decode(&user["user"]["client-key-data"]), "KEY PEM");
        let context = &config["contexts"][0];
        assert_eq!(
            (&context["name"], &context["context"]["cluster"], &context["context"]["user"]),
            (&"corten".into(), &"corten".into(), &"admin".into())
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
