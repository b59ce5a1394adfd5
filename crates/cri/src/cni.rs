//! The CNI network of the node's pods: a `cni0` bridge with host-local addresses from the node's
//! podCIDR and host ports through `portmap`. The runtime (containerd) reads the conflist from its
//! CNI conf dir and sets up loopback itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The podCIDR of a node that has none assigned (k3s's default range, first /24).
pub const DEFAULT_POD_CIDR: &str = "10.42.0.0/24";
/// The name of the conflist file written into the CNI conf dir.
pub const CONFLIST_FILE: &str = "10-corten.conflist";
/// The bridge the pods' veths are attached to; its address is their gateway.
pub const BRIDGE: &str = "cni0";

/// Why the CNI config could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The podCIDR is not `address/prefix`.
    #[error("invalid podCIDR {0:?}: expected an address/prefix like 10.42.0.0/24")]
    InvalidCidr(String),
    /// The conf dir could not be written.
    #[error("cannot write the CNI config {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The conflist for pods on `pod_cidr`, with host-local's allocations kept in `ipam_dir`.
pub fn render_conflist(pod_cidr: &str, ipam_dir: &Path) -> Result<String, CniError> {
    let default_route = match parse_cidr(pod_cidr)? {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "corten",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": default_route }],
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    Ok(format!("{conflist:#}\n"))
}

/// Writes the conflist for `pod_cidr` into `conf_dir` (atomically, replacing an older one); the
/// kubelet calls this once it knows its Node's podCIDR. Returns the file written.
pub fn write_cni_config(conf_dir: &Path, pod_cidr: &str, ipam_dir: &Path) -> Result<PathBuf, CniError> {
    let text = render_conflist(pod_cidr, ipam_dir)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CniError::Io { path, source }
    };
    std::fs::create_dir_all(conf_dir).map_err(io(conf_dir))?;
    std::fs::create_dir_all(ipam_dir).map_err(io(ipam_dir))?;
    let file = conf_dir.join(CONFLIST_FILE);
    // A dot file is not a config to the runtime's directory watcher until it is renamed.
    let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &file).map_err(io(&file))?;
    Ok(file)
}

/// The network address of `address/prefix`, checking the prefix length.
fn parse_cidr(cidr: &str) -> Result<IpAddr, CniError> {
    let invalid = || CniError::InvalidCidr(cidr.to_string());
    let (address, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(invalid());
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rendered(cidr: &str) -> Value {
        let text = render_conflist(cidr, Path::new("/data/agent/cni")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    #[test]
    fn the_bridge_allocates_from_the_pod_cidr_with_host_local() {
        let conf = rendered("10.42.3.0/24");
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["dataDir"], "/data/agent/cni");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    }

    #[test]
    fn host_ports_go_through_portmap() {
        let conf = rendered(DEFAULT_POD_CIDR);
        assert_eq!(conf["plugins"][1]["type"], "portmap");
        assert_eq!(conf["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn an_ipv6_pod_cidr_gets_an_ipv6_default_route() {
        assert_eq!(rendered("fd00:42::/64")["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn a_pod_cidr_that_is_not_address_slash_prefix_is_rejected() {
        for bad in ["10.42.0.0", "10.42.0.0/33", "banana/24", "10.42.0.0/x", ""] {
            let result = render_conflist(bad, Path::new("/x"));
            assert!(matches!(result, Err(CniError::InvalidCidr(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn writing_the_config_replaces_the_previous_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let conf_dir = dir.path().join("net.d");
        write_cni_config(&conf_dir, "10.42.0.0/24", &dir.path().join("ipam"))?;
        let file = write_cni_config(&conf_dir, "10.42.7.0/24", &dir.path().join("ipam"))?;
        assert_eq!(file, conf_dir.join(CONFLIST_FILE));
        let conf: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        assert_eq!(conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.42.7.0/24");
        let names: Vec<_> =
            std::fs::read_dir(&conf_dir)?.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFLIST_FILE)], "only the conflist is left");
        assert!(dir.path().join("ipam").is_dir(), "the ipam data dir is created");
        Ok(())
    }
}
