#!/usr/bin/env python3
"""Builds corten's air-gap images offline, as docker-archive tarballs that `ctr images import`
(and `docker load`) read:

  pause.tar    docker.io/corten/pause:3.10     our static pause binary (pause.c)
  busybox.tar  docker.io/library/busybox:1.36  Debian's busybox-static with its applet links

Usage: build.py OUT_DIR. Needs gcc with a static libc (Debian: gcc, libc6-dev) and
busybox-static. The output is deterministic: the same inputs give the same bytes and so the
same image ids (all times are the epoch, owners root, entries sorted).
"""

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class Layer:
    """A deterministic tar of a root file system, built entry by entry."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        self.entries[path] = ("dir", mode, None)

    def file(self, path, data, mode=0o644):
        self.entries[path] = ("file", mode, data)

    def symlink(self, path, target):
        self.entries[path] = ("symlink", 0o777, target)

    def add_parents(self):
        for path in list(self.entries):
            parent = os.path.dirname(path)
            while parent and parent not in self.entries:
                self.dir(parent)
                parent = os.path.dirname(parent)

    def tar(self):
        self.add_parents()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, mode, data = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "root", "root"
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_archive(out, repo_tags, layer_tar, image_config):
    """Writes a docker-archive (`docker save` format) with one layer."""
    layer_id = sha256(layer_tar)
    arch = ARCHES.get(platform.machine(), platform.machine())
    config = canonical_json(
        {
            "architecture": arch,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "corten images/build.py"}],
        }
    )
    config_id = sha256(config)
    manifest = canonical_json(
        [{"Config": config_id + ".json", "RepoTags": repo_tags, "Layers": [layer_id + "/layer.tar"]}]
    )
    files = {
        layer_id + "/layer.tar": layer_tar,
        config_id + ".json": config,
        "manifest.json": manifest,
    }
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in [layer_id] + sorted(files):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            if name == layer_id:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
    os.replace(tmp, out)
    print(f"{out}: {' '.join(repo_tags)} (id sha256:{config_id})")


def pause_image(out_dir):
    if shutil.which("gcc") is None:
        sys.exit("error: gcc not found: apt-get install gcc libc6-dev")
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "pause")
        cmd = ["gcc", "-static", "-Os", "-s", "-o", binary, os.path.join(HERE, "pause.c")]
        subprocess.run(cmd, check=True)
        with open(binary, "rb") as f:
            data = f.read()
    layer = Layer()
    layer.file("pause", data, 0o755)
    write_archive(
        os.path.join(out_dir, "pause.tar"),
        ["docker.io/corten/pause:3.10"],
        layer.tar(),
        {"Entrypoint": ["/pause"], "Env": [PATH_ENV], "User": "65535:65535"},
    )


def busybox_image(out_dir):
    if not os.path.exists(BUSYBOX):
        sys.exit(f"error: {BUSYBOX} not found: apt-get install busybox-static")
    with open(BUSYBOX, "rb") as f:
        data = f.read()
    applets = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    layer = Layer()
    layer.file("bin/busybox", data, 0o755)
    for applet in applets.stdout.split():
        if applet != "bin/busybox":
            layer.symlink(applet, "/bin/busybox")
    for path in ["dev", "proc", "sys", "etc", "root", "var/www", "home"]:
        layer.dir(path)
    layer.dir("tmp", 0o1777)
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
    layer.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    write_archive(
        os.path.join(out_dir, "busybox.tar"),
        ["docker.io/library/busybox:1.36"],
        layer.tar(),
        {"Cmd": ["sh"], "Env": [PATH_ENV]},
    )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    pause_image(out_dir)
    busybox_image(out_dir)


if __name__ == "__main__":
    main()
