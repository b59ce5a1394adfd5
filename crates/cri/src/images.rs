//! Air-gap images: imports the image tarballs (docker-archive, as `docker save` and
//! `images/build.py` write them) of a directory into containerd's `k8s.io` namespace, where the
//! CRI finds them, so pods run without a registry. An image whose every tag already names the
//! same image id is skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::{debug, info};

use crate::{api, Runtime};

/// How long the CRI may take to see an image after its import.
const VISIBLE_WITHIN: Duration = Duration::from_secs(20);

/// Why the images could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A tarball or the directory could not be read.
    #[error("cannot read the image tarball {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tarball has no (valid) `manifest.json`.
    #[error("{path} is not a docker-archive image tarball: {reason}")]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `ctr images import` failed.
    #[error("ctr images import {path} failed: {output}")]
    Ctr {
        /// The file.
        path: PathBuf,
        /// What ctr said (or why it could not be run).
        output: String,
    },
    /// Asking the CRI about an image failed.
    #[error(transparent)]
    Cri(#[from] crate::Error),
    /// The CRI did not list an imported image.
    #[error("the runtime does not list {image} after its import from {path}")]
    NotVisible {
        /// The image name.
        image: String,
        /// The file.
        path: PathBuf,
    },
}

/// One image of a docker-archive's `manifest.json`.
#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Vec<String>,
}

/// An image in a tarball: its id (`sha256:` of its config) and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    /// `sha256:<hex>`, what the CRI reports as the image's id.
    pub id: String,
    /// Its full names, e.g. `docker.io/library/busybox:1.36`.
    pub tags: Vec<String>,
}

/// The images in a docker-archive tarball, from its `manifest.json`.
pub fn archive_images(path: &Path) -> Result<Vec<ArchiveImage>, ImportError> {
    let read = |source| ImportError::Read { path: path.to_path_buf(), source };
    let not_archive = |reason: String| ImportError::NotAnArchive { path: path.to_path_buf(), reason };
    let mut archive = tar::Archive::new(std::fs::File::open(path).map_err(read)?);
    for entry in archive.entries().map_err(read)? {
        let entry = entry.map_err(read)?;
        if entry.path().map_err(read)?.as_os_str() != "manifest.json" {
            continue;
        }
        let manifest: Vec<ManifestEntry> =
            serde_json::from_reader(entry).map_err(|e| not_archive(format!("manifest.json: {e}")))?;
        return manifest
            .into_iter()
            .map(|image| {
                // `<hex>.json` (docker save before 25) or `blobs/sha256/<hex>` (OCI-style).
                let file = image.config.rsplit('/').next().unwrap_or_default();
                let hex = file.strip_suffix(".json").unwrap_or(file);
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(not_archive(format!("config {:?} is not named by its digest", image.config)));
                }
                Ok(ArchiveImage { id: format!("sha256:{hex}"), tags: image.repo_tags })
            })
            .collect();
    }
    Err(not_archive("no manifest.json".into()))
}

/// The `.tar` files in `dir`, sorted; none when `dir` does not exist.
fn tarballs(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let read = |source| ImportError::Read { path: dir.to_path_buf(), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|ext| ext == "tar") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// True when every tag of `image` names `image.id` in the runtime.
async fn present<R: Runtime>(runtime: &R, image: &ArchiveImage) -> Result<bool, ImportError> {
    for tag in &image.tags {
        let spec = api::ImageSpec { image: tag.clone(), ..Default::default() };
        match runtime.image_status(spec).await? {
            Some(found) if found.id == image.id => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Imports every `*.tar` docker-archive in `dir` into the containerd at `socket` (namespace
/// `k8s.io`, with `ctr` of the containerd package), skipping those whose images `runtime`
/// already has, and waits until the CRI lists each imported image. Returns the tarballs that
/// were imported. A missing `dir` is no images.
pub async fn import_images<R: Runtime>(
    dir: &Path,
    socket: &Path,
    runtime: &R,
) -> Result<Vec<PathBuf>, ImportError> {
    let mut imported = Vec::new();
    for path in tarballs(dir)? {
        let file = path.clone();
        let images = tokio::task::spawn_blocking(move || archive_images(&file)).await.map_err(|e| {
            ImportError::Read { path: path.clone(), source: std::io::Error::other(e.to_string()) }
        })??;
        let mut missing = false;
        for image in &images {
            missing |= !present(runtime, image).await?;
        }
        if !missing {
            debug!(tarball = %path.display(), "images already imported");
            continue;
        }
        ctr_import(&path, socket).await?;
        for image in &images {
            wait_visible(runtime, image, &path).await?;
        }
        let tags: Vec<&str> = images.iter().flat_map(|i| i.tags.iter().map(String::as_str)).collect();
        info!(tarball = %path.display(), images = ?tags, "imported air-gap images");
        imported.push(path);
    }
    Ok(imported)
}

async fn ctr_import(path: &Path, socket: &Path) -> Result<(), ImportError> {
    let failed = |output: String| ImportError::Ctr { path: path.to_path_buf(), output };
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(path)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(format!("cannot run ctr (apt-get install containerd): {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!("{}: {}", output.status, stderr.trim())));
    }
    Ok(())
}

/// The CRI learns of images from containerd's events: wait until it lists this one.
async fn wait_visible<R: Runtime>(runtime: &R, image: &ArchiveImage, path: &Path) -> Result<(), ImportError> {
    let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
    while !present(runtime, image).await? {
        if tokio::time::Instant::now() >= deadline {
            let image = image.tags.first().cloned().unwrap_or_else(|| image.id.clone());
            return Err(ImportError::NotVisible { image, path: path.to_path_buf() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        let mut builder = tar::Builder::new(std::fs::File::create(&path)?);
        for (file, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, file, *data)?;
        }
        builder.finish()?;
        Ok(path)
    }

    const HEX: &str = "1ab16206631b07aa1455a541d6a5a661e5a0dec001bb3d58c0e894a8acebc39c";

    #[test]
    fn the_images_of_a_docker_archive_are_read_from_its_manifest() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let manifest =
            format!(r#"[{{"Config":"{HEX}.json","RepoTags":["docker.io/corten/pause:3.10"],"Layers":[]}}]"#);
        let path = archive(
            dir.path(),
            "pause.tar",
            &[("x/layer.tar", b""), ("manifest.json", manifest.as_bytes())],
        )?;
        let images = archive_images(&path)?;
        let expected =
            ArchiveImage { id: format!("sha256:{HEX}"), tags: vec!["docker.io/corten/pause:3.10".into()] };
        assert_eq!(images, vec![expected]);
        Ok(())
    }

    #[test]
    fn a_tarball_without_a_manifest_is_not_an_image() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = archive(dir.path(), "x.tar", &[("hello.txt", b"hi")])?;
        assert!(matches!(archive_images(&path), Err(ImportError::NotAnArchive { .. })));
        Ok(())
    }

    #[test]
    fn only_tar_files_are_considered_and_a_missing_dir_has_none() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("b.tar"), b"")?;
        std::fs::write(dir.path().join("a.tar"), b"")?;
        std::fs::write(dir.path().join("README"), b"")?;
        assert_eq!(tarballs(dir.path())?, vec![dir.path().join("a.tar"), dir.path().join("b.tar")]);
        assert!(tarballs(&dir.path().join("nope"))?.is_empty());
        Ok(())
    }
}
