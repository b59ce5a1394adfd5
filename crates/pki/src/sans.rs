//! Subject alternative names of the API serving certificate: fixed service names, the host's names
//! and addresses, and the operator's `--tls-san` values.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls::pki_types::DnsName;

use crate::{Error, PkiOptions, Result};

/// DNS names of the in-cluster `kubernetes` Service, always in the serving certificate.
const SERVICE_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// One subject alternative name. DNS names are kept lowercase so comparisons are exact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// Parses an operator-supplied value: an IP address, else a DNS name (wildcards allowed).
    pub(crate) fn parse(value: &str) -> Result<San> {
        let value = value.trim();
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let name = value.to_ascii_lowercase();
        let checked = name.strip_prefix("*.").unwrap_or(&name);
        if DnsName::try_from(checked).is_err() || checked.parse::<IpAddr>().is_ok() {
            return Err(Error::InvalidSan(value.to_owned()));
        }
        Ok(San::Dns(name))
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType> {
        Ok(match self {
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            San::Dns(name) => rcgen::SanType::DnsName(
                name.as_str().try_into().map_err(|_| Error::InvalidSan(name.clone()))?,
            ),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => ip.fmt(f),
        }
    }
}

/// Every SAN the serving certificate must carry for `opts` on this host, sorted and deduplicated.
pub(crate) fn required(opts: &PkiOptions) -> Result<Vec<San>> {
    let mut sans = BTreeSet::new();
    sans.extend(SERVICE_NAMES.iter().map(|n| San::Dns((*n).to_owned())));
    sans.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.insert(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    sans.insert(San::Ip(opts.service_ip));
    if let Some(name) = hostname() {
        sans.insert(name);
    }
    sans.extend(host_addresses().into_iter().map(San::Ip));
    for value in &opts.extra_sans {
        sans.insert(San::parse(value)?);
    }
    Ok(sans.into_iter().collect())
}

/// The host name (when valid), loopback and the host's reachable addresses, sorted.
pub(crate) fn host_sans() -> Vec<San> {
    let mut sans = BTreeSet::new();
    sans.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.insert(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    if let Some(name) = hostname() {
        sans.insert(name);
    }
    sans.extend(host_addresses().into_iter().map(San::Ip));
    sans.into_iter().collect()
}

/// The host name, when it is a valid DNS name.
fn hostname() -> Option<San> {
    let name = nix::unistd::gethostname().ok()?;
    San::parse(name.to_str()?).ok()
}

/// Addresses of the host's interfaces that clients can reach it on.
///
/// Link-local addresses are left out: every veth gets an `fe80::` address, and putting those in the
/// certificate would re-issue it whenever a pod starts. A failure to list interfaces is logged, not
/// fatal: loopback and `--tls-san` still work.
fn host_addresses() -> Vec<IpAddr> {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(error) => {
            tracing::warn!(%error, "cannot list network interfaces; the serving certificate only covers loopback and --tls-san addresses");
            return Vec::new();
        }
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| reachable(*ip))
        .collect()
}

fn reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_link_local() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_dns_values_parse_and_garbage_is_rejected() {
        assert_eq!(San::parse("10.0.0.7").unwrap(), San::Ip("10.0.0.7".parse().unwrap()));
        assert_eq!(San::parse("API.Example.com").unwrap(), San::Dns("api.example.com".to_owned()));
        assert_eq!(San::parse("*.example.com").unwrap(), San::Dns("*.example.com".to_owned()));
        let err = San::parse("not a name").unwrap_err();
        assert!(err.to_string().contains("\"not a name\""), "{err}");
    }

    #[test]
    fn required_sans_include_service_names_loopback_and_the_service_ip() {
        let opts = PkiOptions {
            dir: "/unused".into(),
            extra_sans: vec!["api.example.com".to_owned()],
            service_ip: "10.43.0.1".parse().unwrap(),
        };
        let sans = required(&opts).unwrap();
        for want in [
            San::Dns("kubernetes.default.svc".to_owned()),
            San::Dns("localhost".to_owned()),
            San::Dns("api.example.com".to_owned()),
            San::Ip("127.0.0.1".parse().unwrap()),
            San::Ip("::1".parse().unwrap()),
            San::Ip("10.43.0.1".parse().unwrap()),
        ] {
            assert!(sans.contains(&want), "{want} missing from {sans:?}");
        }
        assert!(!sans.iter().any(|s| matches!(s, San::Ip(ip) if !reachable(*ip))));
    }
}
