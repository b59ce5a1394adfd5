//! Pod volumes under `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`: emptyDir
//! (disk, or tmpfs for `medium: Memory`), hostPath, configMap, secret, downwardAPI and projected
//! (configMap, secret, downwardAPI, serviceAccountToken through the TokenRequest API). Content
//! volumes are written like upstream's AtomicWriter: files in a fresh `..<timestamp>` directory,
//! `..data` swapped to it by an atomic rename, user-visible names as symlinks through `..data`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use tracing::{debug, warn};

use crate::node::Resources;
use crate::pod::env::{field_value, resource_value};
use crate::{Error, Result};

/// `<root>/pods/<uid>`.
pub(crate) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// Files of a content volume: relative path -> (bytes, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Writes `files` into `dir` atomically; returns whether anything changed.
pub(crate) fn write_atomic(dir: &Path, files: &Files) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let data = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data) {
        let old = dir.join(&current);
        if same_files(&old, files) {
            return Ok(false);
        }
    }
    let stamp = jiff::Timestamp::now();
    let ts_name = format!("..{}_{:09}", stamp.as_second(), stamp.subsec_nanosecond());
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir_all(&ts_dir).map_err(Error::io(&ts_dir))?;
    for (rel, (bytes, mode)) in files {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut f = std::fs::File::create(&path).map_err(Error::io(&path))?;
        f.write_all(bytes).map_err(Error::io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).map_err(Error::io(&path))?;
    }
    let old_target = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, &data).map_err(Error::io(&data))?;
    let visible: HashSet<String> =
        files.keys().filter_map(|k| k.split('/').next().map(str::to_string)).collect();
    for name in &visible {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).map_err(Error::io(&link))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !visible.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old_target.filter(|o| o.as_path() != Path::new(&ts_name)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_files(dir: &Path, files: &Files) -> bool {
    let mut count = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { return false };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                count += 1;
            }
        }
    }
    count == files.len()
        && files.iter().all(|(rel, (bytes, mode))| {
            let p = dir.join(rel);
            std::fs::read(&p).is_ok_and(|b| &b == bytes)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        })
}

fn items_or_all(
    data: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    mode: u32,
) -> Result<Files> {
    let mut files = Files::new();
    match items {
        None => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone(), mode));
            }
        }
        Some(items) => {
            for i in items {
                let Some(v) = data.get(&i.key) else {
                    return Err(Error::Config(format!("configuration key {:?} not found", i.key)));
                };
                let m = i.mode.map(|m| m as u32).unwrap_or(mode);
                files.insert(safe_path(&i.path)?, (v.clone(), m));
            }
        }
    }
    Ok(files)
}

fn safe_path(p: &str) -> Result<String> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c.starts_with("..")) {
        return Err(Error::Config(format!("invalid volume item path {p:?}")));
    }
    Ok(p.to_string())
}

async fn configmap_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|cm| {
        let mut d: BTreeMap<String, Vec<u8>> =
            cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        d.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
        d
    }))
}

async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s| {
        let mut d: BTreeMap<String, Vec<u8>> =
            s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        d.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
        d
    }))
}

/// What downward-API and token files are computed from.
#[derive(Debug)]
pub(crate) struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub host_ip: IpAddr,
    pub pod_ips: &'a [String],
    pub allocatable: &'a Resources,
}

fn downward_files(f: &PodFacts<'_>, items: &[DownwardAPIVolumeFile], mode: u32) -> Result<Files> {
    let mut files = Files::new();
    for i in items {
        let value = if let Some(r) = &i.field_ref {
            field_value(f.pod, &r.field_path, &f.host_ip.to_string(), f.pod_ips)?
        } else if let Some(r) = &i.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let c = f
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .ok_or_else(|| Error::Config(format!("container {name:?} not found")))?;
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()), f.allocatable)?
        } else {
            continue;
        };
        files.insert(safe_path(&i.path)?, (value.into_bytes(), i.mode.map(|m| m as u32).unwrap_or(mode)));
    }
    Ok(files)
}

/// A projected token is re-requested once 80% of its lifetime has passed or it is 24 hours old,
/// whichever comes first (the kubelet token manager's rule).
const TOKEN_MAX_AGE_SECS: u64 = 24 * 3600;

/// The token a projected volume already holds at `path` while it is fresh: issued (for
/// `audience`, when one is asked for) less than 80% of its lifetime and less than 24 hours
/// before `now` (seconds since the Unix epoch). The file is the cache: it survives kubelet
/// restarts and goes with the pod's directory.
fn cached_token(volume: &Path, path: &str, audience: Option<&str>, now: u64) -> Option<Vec<u8>> {
    let bytes = std::fs::read(volume.join(path)).ok()?;
    let payload = std::str::from_utf8(&bytes).ok()?.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let (iat, exp) = (claims.get("iat")?.as_u64()?, claims.get("exp")?.as_u64()?);
    if let Some(audience) = audience {
        let aud = claims.get("aud")?;
        let matches = aud.as_str() == Some(audience)
            || aud.as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(audience)));
        if !matches {
            return None;
        }
    }
    let lifetime = exp.checked_sub(iat)?;
    let refresh_at = iat.saturating_add((lifetime / 10 * 8).min(TOKEN_MAX_AGE_SECS));
    (now < refresh_at).then_some(bytes)
}

/// A token for the pod's service account through the TokenRequest API, bound to the pod:
/// for `audience` (the API server's own when `None`), valid for `expiration` seconds (1 hour
/// when `None`).
async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<Vec<u8>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().filter(|a| !a.is_empty()).collect(),
            expiration_seconds: Some(expiration.unwrap_or(3600)),
            bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let failed = |message: String| Error::Config(format!("failed to fetch token: {message}"));
    match api.create_token_request(&sa, &PostParams::default(), &req).await {
        Ok(t) => t
            .status
            .map(|s| s.token.into_bytes())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("the API server answered the TokenRequest without a token".into())),
        Err(kube::Error::Api(s)) => Err(failed(s.message)),
        Err(e) => Err(e.into()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(4) == Some(p.as_ref()))
}

fn mount_tmpfs(path: &Path, size: Option<&str>) -> Result<()> {
    if is_mounted(path) {
        return Ok(());
    }
    let data = size.and_then(corten_schema::quantity::units).map(|b| format!("size={b}"));
    nix::mount::mount(Some("tmpfs"), path, Some("tmpfs"), nix::mount::MsFlags::empty(), data.as_deref())
        .map_err(|e| Error::Config(format!("mounting tmpfs at {} failed: {e}", path.display())))
}

/// The files of a content volume; `dir` is where the volume is (its current token is reused
/// while fresh).
async fn volume_content(
    client: &kube::Client,
    f: &PodFacts<'_>,
    v: &Volume,
    dir: &Path,
) -> Result<Option<Files>> {
    let ns = f.pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.map(|m| m as u32).unwrap_or(0o644);
        return match configmap_data(client, ns, &cm.name).await? {
            Some(d) => items_or_all(&d, &cm.items, mode).map(Some),
            None if cm.optional.unwrap_or(false) => Ok(Some(Files::new())),
            None => Err(Error::Config(format!("configmap {:?} not found", cm.name))),
        };
    }
    if let Some(s) = &v.secret {
        let mode = s.default_mode.map(|m| m as u32).unwrap_or(0o644);
        let name = s.secret_name.clone().unwrap_or_default();
        return match secret_data(client, ns, &name).await? {
            Some(d) => items_or_all(&d, &s.items, mode).map(Some),
            None if s.optional.unwrap_or(false) => Ok(Some(Files::new())),
            None => Err(Error::Config(format!("secret {name:?} not found"))),
        };
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.map(|m| m as u32).unwrap_or(0o644);
        return downward_files(f, d.items.as_deref().unwrap_or(&[]), mode).map(Some);
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.map(|m| m as u32).unwrap_or(0o644);
        let mut files = Files::new();
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                match configmap_data(client, ns, &cm.name).await? {
                    Some(d) => files.extend(items_or_all(&d, &cm.items, mode)?),
                    None if cm.optional.unwrap_or(false) => {}
                    None => return Err(Error::Config(format!("configmap {:?} not found", cm.name))),
                }
            }
            if let Some(s) = &src.secret {
                match secret_data(client, ns, &s.name).await? {
                    Some(d) => files.extend(items_or_all(&d, &s.items, mode)?),
                    None if s.optional.unwrap_or(false) => {}
                    None => return Err(Error::Config(format!("secret {:?} not found", s.name))),
                }
            }
            if let Some(d) = &src.downward_api {
                files.extend(downward_files(f, d.items.as_deref().unwrap_or(&[]), mode)?);
            }
            if let Some(t) = &src.service_account_token {
                let path = safe_path(&t.path)?;
                let audience = t.audience.as_deref().filter(|a| !a.is_empty());
                let token = match cached_token(dir, &path, audience, unix_now()) {
                    Some(token) => token,
                    None => {
                        let token =
                            service_account_token(client, f.pod, t.audience.clone(), t.expiration_seconds)
                                .await?;
                        debug!(pod = %crate::pod::key(f.pod), volume = %v.name, "service account token requested");
                        token
                    }
                };
                files.insert(path, (token, mode));
            }
        }
        return Ok(Some(files));
    }
    Ok(None)
}

fn plugin_of(v: &Volume) -> Option<&'static str> {
    Some(if v.empty_dir.is_some() {
        "empty-dir"
    } else if v.config_map.is_some() {
        "configmap"
    } else if v.secret.is_some() {
        "secret"
    } else if v.downward_api.is_some() {
        "downward-api"
    } else if v.projected.is_some() {
        "projected"
    } else {
        return None;
    })
}

fn host_path(v: &Volume) -> Result<Option<PathBuf>> {
    let Some(hp) = &v.host_path else { return Ok(None) };
    let path = PathBuf::from(&hp.path);
    let fail =
        |what: &str| Err(Error::Config(format!("hostPath type check failed: {} is not a {what}", hp.path)));
    match hp.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(Error::io(&path))?,
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
            }
            std::fs::File::create(&path).map_err(Error::io(&path))?;
        }
        "Directory" if !path.is_dir() => return fail("directory"),
        "File" if !path.is_file() => return fail("file"),
        "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => return fail("device or socket"),
        _ => {}
    }
    Ok(Some(path))
}

/// Sets up (or refreshes) the volumes of `pod`; returns volume name -> host path.
pub(crate) async fn setup(
    client: &kube::Client,
    root: &Path,
    facts: &PodFacts<'_>,
) -> Result<HashMap<String, PathBuf>> {
    let uid = facts.pod.metadata.uid.as_deref().unwrap_or("");
    let dir = pod_dir(root, uid).join("volumes");
    let mut out = HashMap::new();
    for v in facts.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(path) = host_path(v)? {
            out.insert(v.name.clone(), path);
            continue;
        }
        let Some(plugin) = plugin_of(v) else {
            return Err(Error::Config(format!(
                "volume {:?}: this volume type is not supported by corten yet",
                v.name
            )));
        };
        let path = dir.join(format!("kubernetes.io~{plugin}")).join(&v.name);
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        if let Some(ed) = &v.empty_dir {
            if ed.medium.as_deref() == Some("Memory") {
                mount_tmpfs(&path, ed.size_limit.as_ref().map(|q| q.0.as_str()))?;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                .map_err(Error::io(&path))?;
        } else if let Some(files) = volume_content(client, facts, v, &path).await? {
            if write_atomic(&path, &files)? {
                debug!(pod = %crate::pod::key(facts.pod), volume = %v.name, "volume content written");
            }
        }
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// Writes the pod's `/etc/hosts` (`<pod dir>/etc-hosts`) and returns its path.
pub(crate) fn write_etc_hosts(
    root: &Path,
    pod: &Pod,
    ip: Option<&str>,
    hostname: &str,
    domain: &str,
) -> Result<PathBuf> {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let dir = pod_dir(root, uid);
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        let spec = pod.spec.as_ref();
        match spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                text.push_str(&format!("{ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"));
            }
            None => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.clone()).unwrap_or_default();
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            text.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.unwrap_or_default().join("\t")));
        }
    }
    let path = dir.join("etc-hosts");
    std::fs::write(&path, text).map_err(Error::io(&path))?;
    Ok(path)
}

fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    for l in mounts.lines() {
        if let Some(p) = l.split_whitespace().nth(4).filter(|p| p.starts_with(&prefix)) {
            if let Err(e) = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH) {
                warn!(error = %e, path = %p, "unmounting a pod volume failed");
            }
        }
    }
}

/// Unmounts and removes the directory of the pod `uid`.
pub(crate) fn remove_pod_dir(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    if dir.exists() {
        unmount_under(&dir);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(error = %e, path = %dir.display(), "removing a pod directory failed");
        }
    }
}

/// Removes the directories of pods not in `known`.
pub(crate) fn remove_orphaned_pod_dirs(root: &Path, known: &HashSet<&str>) {
    let Ok(entries) = std::fs::read_dir(root.join("pods")) else { return };
    for e in entries.flatten() {
        let uid = e.file_name().to_string_lossy().into_owned();
        if !known.contains(uid.as_str()) {
            remove_pod_dir(root, &uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str, u32)]) -> Files {
        entries.iter().map(|(k, v, m)| (k.to_string(), (v.as_bytes().to_vec(), *m))).collect()
    }

    #[test]
    fn atomic_writes_swap_the_data_link_and_drop_removed_keys() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("vol");
        assert!(write_atomic(&dir, &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]))?);
        assert_eq!(std::fs::read_to_string(dir.join("a"))?, "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b"))?, "2");
        assert_eq!(std::fs::read_link(dir.join("a"))?, Path::new("..data/a"));
        assert_eq!(std::fs::metadata(dir.join("sub/b"))?.permissions().mode() & 0o777, 0o600);
        let first = std::fs::read_link(dir.join("..data"))?;
        assert!(
            !write_atomic(&dir, &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]))?,
            "same content: no write"
        );
        assert!(write_atomic(&dir, &files(&[("a", "changed", 0o644)]))?);
        assert_eq!(std::fs::read_to_string(dir.join("a"))?, "changed");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err(), "removed keys disappear");
        assert!(!dir.join(&first).exists(), "the old timestamped directory is removed");
        Ok(())
    }

    fn jwt(claims: serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    #[test]
    fn a_projected_token_is_reused_until_80_percent_of_its_lifetime_or_24_hours() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let hour = jwt(serde_json::json!({"iat": 1000, "exp": 4600, "aud": ["api"]}));
        std::fs::write(tmp.path().join("token"), &hour)?;
        let cached = |audience, now| cached_token(tmp.path(), "token", audience, now);
        assert_eq!(cached(None, 1000).as_deref(), Some(hour.as_bytes()));
        assert!(cached(None, 1000 + 2879).is_some());
        assert!(cached(None, 1000 + 2880).is_none(), "80% of an hour has passed");
        assert!(cached(Some("api"), 2000).is_some());
        assert!(cached(Some("vault"), 2000).is_none(), "asked for another audience");
        let year = jwt(serde_json::json!({"iat": 0, "exp": 365 * 24 * 3600, "aud": "api"}));
        std::fs::write(tmp.path().join("token"), &year)?;
        assert!(cached(Some("api"), 24 * 3600 - 1).is_some());
        assert!(cached(Some("api"), 24 * 3600).is_none(), "a day old");
        std::fs::write(tmp.path().join("token"), "not a jwt")?;
        assert!(cached(None, 0).is_none());
        assert!(cached_token(tmp.path(), "missing", None, 0).is_none());
        Ok(())
    }

    #[test]
    fn item_paths_cannot_escape_the_volume() {
        assert!(safe_path("../x").is_err());
        assert!(safe_path("/etc/passwd").is_err());
        assert!(safe_path("a/..data").is_err());
        assert!(safe_path("conf/app.yaml").is_ok());
    }
}
