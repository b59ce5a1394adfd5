#!/usr/bin/env python3
"""Generates crates/schema/data/v1.33-protobuf.json.zlib: the protobuf descriptors of the built-in
Kubernetes v1.33 types that the API server needs to decode `application/vnd.kubernetes.protobuf`
request bodies into JSON (src/protobuf/).

Inputs (nothing is downloaded):
  * the prost-generated sources of the crate k8s-pb 0.9.0 (in the cargo registry, e.g. after
    `cargo fetch` of a project that depends on it): one Rust struct per message, each field with
    `#[prost(<type>, optional|repeated, tag = "N")]`;
  * the embedded v1.33 schema (crates/schema/data/v1.33-definitions.json.zlib): the JSON names of
    the fields (k8s-pb only has snake_case Rust names), the definition names, `required`, and the
    group-version-kinds;
  * kubectl 1.33 (the binary beside the `kubectl` on PATH, as the end-to-end tests find it): its
    embedded gogo-protobuf file descriptors say which fields are Go pointers (a field without
    `(gogoproto.nullable) = false`). gogo always encodes non-pointer fields, so a zero value on the
    wire means "unset" for those and "explicitly zero" for pointers (`replicas: 0`); Go's JSON
    encoding drops the former (`omitempty`) and keeps the latter, and so must the decoder. They
    also cross-check k8s-pb (same tags, types and names for every v1.33 field), tell which k8s-pb
    fields are newer than v1.33, and supply the v1.33 messages and fields k8s-pb no longer has
    (resource.k8s.io/v1alpha3, storagemigration.k8s.io/v1alpha1, networking.k8s.io/v1alpha1).

Matching is exact or the script fails: a Rust field name must equal exactly one schema property
when both are lower-cased with `_`, `-` and `$` removed (`volume_id` = `volumeID`,
`x_kubernetes_list_type` = `x-kubernetes-list-type`, `r#ref` = `$ref`), and a struct must equal one
definition the same way (`api/core/v1` + `AwsElasticBlockStoreVolumeSource` =
`io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource`). Fields that k8s-pb (built from a newer
Kubernetes) has and v1.33 has not are left out and listed.

Output: zlib-compressed JSON
  {"messages": [{"name": def, "special": str, "fields": [[tag, json, type, flags, message]]}],
   "kinds": [[apiVersion, kind, message]]}
type: string bytes int32 int64 bool double message; flags: 1 repeated, 2 map (string keys),
4 keep zero values (Go pointer or required field), 8 inline (a Go struct embedded with
`json:",inline"`: its fields go into the parent object; the name is empty); message: index into messages or -1.

Usage: python3 crates/schema/tools/gen_proto_descriptors.py [--k8s-pb DIR] [--kubectl FILE]
       [--schema FILE.json|FILE.json.zlib] [--out FILE] [--check]
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")

# Messages whose JSON form is not an object of their fields (custom MarshalJSON in Go), by the
# k8s-pb module path and struct name. The decoder implements each by the tags listed here; the
# script checks k8s-pb agrees.
SPECIAL = {
    ("apimachinery/pkg/util/intstr", "IntOrString"): ("intOrString", {1: "int64", 2: "int32", 3: "string"}),
    ("apimachinery/pkg/api/resource", "Quantity"): ("quantity", {1: "string"}),
    ("apimachinery/pkg/api/resource", "QuantityValue"): ("quantity", {1: "string"}),
    ("apimachinery/pkg/apis/meta/v1", "Time"): ("time", {1: "int64", 2: "int32"}),
    ("apimachinery/pkg/apis/meta/v1", "MicroTime"): ("microTime", {1: "int64", 2: "int32"}),
    ("apimachinery/pkg/apis/meta/v1", "Duration"): ("duration", {1: "int64"}),
    ("apimachinery/pkg/apis/meta/v1", "FieldsV1"): ("rawJson", {1: "bytes"}),
    ("apimachinery/pkg/runtime", "RawExtension"): ("rawExtension", {1: "bytes"}),
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "Json"): ("rawJson", {1: "bytes"}),
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrArray"):
        ("propsOrArray", {1: "message", 2: "message"}),
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrBool"):
        ("propsOrBool", {1: "bool", 2: "message"}),
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrStringArray"):
        ("propsOrStringArray", {1: "message", 2: "string"}),
}

# Go pointer scalar fields of the types that kubectl does not embed (apiextensions-apiserver and
# kube-aggregator), from their types.go: zero values of these are kept. Every other scalar field
# of these groups is a plain Go value, except where the schema marks it required.
POINTERS_OUTSIDE_KUBECTL = {
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps": {
        "$ref", "maximum", "minimum", "multipleOf", "maxLength", "minLength", "maxItems",
        "minItems", "maxProperties", "minProperties", "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type", "x-kubernetes-map-type",
    },
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion": {
        "deprecationWarning",
    },
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceSubresourceScale": {
        "labelSelectorPath",
    },
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ServiceReference": {"path", "port"},
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookClientConfig": {"url"},
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ValidationRule": {
        "reason", "optionalOldSelf",
    },
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.ServiceReference": {"port"},
}

# Fields of those groups that k8s-pb 0.9.0 has and v1.33 has not (kubectl cannot tell): left out.
NEWER_OUTSIDE_KUBECTL = {
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionCondition.observed_generation",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.observed_generation",
}

PROST_ATTR = re.compile(r'#\[prost\((?P<body>.*)\)\]\s*$')
STRUCT = re.compile(r'^pub struct (\w+) \{')
SCALARS = {"string", "bytes", "int32", "int64", "bool", "double"}


def fail(msg):
    sys.exit(f"gen_proto_descriptors: {msg}")


def norm(s):
    return re.sub(r"[_\-$]", "", s).lower()


# --- k8s-pb --------------------------------------------------------------------------------------

def parse_k8s_pb(root):
    """{(module, struct): [field dicts]} from every src/**/mod.rs."""
    messages = {}
    src = os.path.join(root, "src")
    for path in sorted(glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "/")
        lines = open(path, encoding="utf-8").read().split("\n")
        current = None
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            m = STRUCT.match(line)
            if m:
                current = (module, m.group(1))
                messages[current] = []
            elif line == "}":
                current = None
            elif line.startswith("#[prost(") and current is not None:
                attr = PROST_ATTR.match(line)
                if not attr:
                    fail(f"{path}:{i + 1}: unparsed attribute {line!r}")
                # The declaration may span lines until a ',' at angle-bracket depth 0.
                decl = ""
                i += 1
                while i < len(lines):
                    decl += " " + lines[i].strip()
                    if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    i += 1
                messages[current].append(parse_field(path, module, attr.group("body"), decl.strip()))
            i += 1
    return messages


def parse_field(path, module, attr, decl):
    m = re.match(r"pub (?:r#)?(\w+): (.*),$", decl)
    if not m:
        fail(f"{path}: unparsed field {decl!r}")
    name, rust_type = m.group(1), m.group(2)
    tag = re.search(r'tag = "(\d+)"', attr)
    if not tag:
        fail(f"{path}: no tag in {attr!r}")
    field = {"rust": name, "tag": int(tag.group(1)), "repeated": False, "map": False, "msg": None}
    kind = attr.split(",")[0].split("=")[0].strip()
    if kind == "btree_map":
        kv = re.search(r'btree_map = "string, (\w+)"', attr)
        if not kv:
            fail(f"{path}: map with non-string keys {attr!r}")
        field["map"] = True
        field["type"] = kv.group(1)
    else:
        field["type"] = kind
        field["repeated"] = ", repeated" in attr
    if field["type"] not in SCALARS | {"message"}:
        fail(f"{path}: unsupported field type {field['type']!r} in {attr!r}")
    if field["type"] == "message":
        field["msg"] = resolve_type(path, module, rust_type)
    return field


def resolve_type(path, module, rust_type):
    """The (module, struct) a field's Rust type names: `Option<X>`, `Vec<X>`, `Option<Box<X>>`,
    `BTreeMap<String, X>`, with X bare (same module) or `super::...::path::Name`."""
    t = re.sub(r"\s+", "", rust_type).replace(",>", ">")
    t = t.rstrip(">")
    inner = re.split(r"[<,]", t)[-1]
    parts = inner.split("::")
    up = 0
    while parts and parts[0] == "super":
        up += 1
        parts = parts[1:]
    base = module.split("/")
    if up > len(base):
        fail(f"{path}: type path {rust_type!r} leaves the crate")
    base = base[: len(base) - up]
    if not parts or not parts[-1][:1].isupper():
        fail(f"{path}: cannot resolve type {rust_type!r}")
    return ("/".join(base + parts[:-1]), parts[-1])


# --- kubectl's embedded descriptors --------------------------------------------------------------

def read_varint(b, i):
    v = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def fields_of(b):
    """(field number, wire type, value) of one serialized message."""
    i = 0
    while i < len(b):
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            v = b[i:i + n]
            i += n
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


# FieldDescriptorProto.Type numbers
PB_TYPES = {1: "double", 3: "int64", 5: "int32", 8: "bool", 9: "string", 11: "message", 12: "bytes"}
GOGO_NULLABLE = 65001


def kubectl_descriptors(binary):
    """Every gogo descriptor (a gzipped FileDescriptorProto) in the kubectl binary, as
    {norm(definition name): {"module", "struct", "fields": {tag: field}}}."""
    data = open(binary, "rb").read()
    messages, entries = {}, {}
    magic = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
    pos = data.find(magic)
    while pos >= 0:
        try:
            fd = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[pos:pos + (4 << 20)])
        except zlib.error:
            fd = b""
        if fd[:1] == b"\x0a" and b"generated.proto" in fd[:200]:
            try:
                parse_file_descriptor(fd, messages, entries)
            except (ValueError, KeyError, UnicodeDecodeError):
                pass
        pos = data.find(magic, pos + 1)
    # Map fields are repeated `<Field>Entry` messages: record them as maps of the value type.
    for m in messages.values():
        for f in m["fields"].values():
            entry = entries.get(f["type_name"])
            if entry is not None:
                f["map"] = True
                f["repeated"] = False
                f["type"], f["type_name"] = entry
    return messages


def parse_file_descriptor(fd, messages, entries):
    package = ""
    raws = []
    for num, _, v in fields_of(fd):
        if num == 2:
            package = v.decode()
        elif num == 4:
            raws.append(v)
    if not package.startswith("k8s.io."):
        return
    module = package[len("k8s.io."):].replace(".", "/")
    for raw in raws:
        name, fields, nested = None, {}, []
        for num, _, v in fields_of(raw):
            if num == 1:
                name = v.decode()
            elif num == 2:
                f = parse_field_descriptor(v)
                fields[f["number"]] = f
            elif num == 3:
                nested.append(v)
        for v in nested:  # map entries: key = 1, value = 2
            entry_name, value = None, None
            for num, _, nv in fields_of(v):
                if num == 1:
                    entry_name = nv.decode()
                elif num == 2:
                    f = parse_field_descriptor(nv)
                    if f["number"] == 2:
                        value = (f["type"], f["type_name"])
            entries[f".{package}.{name}.{entry_name}"] = value
        definition = "io.k8s." + module.replace("/", ".") + "." + name
        messages[norm(definition)] = {"module": module, "struct": name, "fields": fields}


def parse_field_descriptor(v):
    f = {"nullable": True, "type_name": "", "repeated": False, "map": False}
    for num, _, fv in fields_of(v):
        if num == 1:
            f["name"] = fv.decode()
        elif num == 3:
            f["number"] = fv
        elif num == 4:
            f["repeated"] = fv == 3
        elif num == 5:
            f["type"] = PB_TYPES.get(fv, f"type{fv}")
        elif num == 6:
            f["type_name"] = fv.decode()
        elif num == 8:
            for onum, _, ov in fields_of(fv):
                if onum == GOGO_NULLABLE and ov == 0:
                    f["nullable"] = False
    return f


def merge_kubectl(pb, kubectl, report):
    """Adds what kubectl 1.33 has and k8s-pb 0.9.0 (built from a newer Kubernetes) no longer
    has: messages of versions since removed (resource/v1alpha3 DeviceClass, ...) and fields."""
    by_norm = {(m, norm(s)): (m, s) for (m, s) in pb}

    def key_of(type_name):
        package, _, struct = type_name.lstrip(".").rpartition(".")
        module = package[len("k8s.io."):].replace(".", "/")
        return by_norm.get((module, norm(struct)), (module, struct))

    for m in kubectl.values():
        key = by_norm.get((m["module"], norm(m["struct"])))
        if key is None:
            key = (m["module"], m["struct"])
            pb[key] = []
            by_norm[(m["module"], norm(m["struct"]))] = key
            report["from kubectl 1.33 (not in k8s-pb 0.9.0)"].append(f"{key[0]}::{key[1]}")
        have = {f["tag"] for f in pb[key]}
        for tag, g in sorted(m["fields"].items()):
            if tag in have:
                continue
            if g["type"] not in SCALARS | {"message"}:
                fail(f"{key[0]}::{key[1]}.{g['name']}: unsupported type {g['type']} in kubectl")
            pb[key].append({"rust": g["name"], "tag": tag, "repeated": g["repeated"],
                            "map": g["map"], "type": g["type"],
                            "msg": key_of(g["type_name"]) if g["type"] == "message" else None})
            if have:
                report["from kubectl 1.33 (not in k8s-pb 0.9.0)"].append(f"{key[0]}::{key[1]}.{g['name']}")
        pb[key].sort(key=lambda f: f["tag"])


def find_kubectl():
    on_path = shutil.which("kubectl")
    if not on_path:
        return None
    beside = os.path.join(os.path.dirname(os.path.realpath(on_path)), "kubectl.1.33")
    return beside if os.path.exists(beside) else None


# --- generation ----------------------------------------------------------------------------------

def load_schema(path):
    raw = open(path, "rb").read()
    if path.endswith(".zlib"):
        raw = zlib.decompress(raw)
    return json.loads(raw)["$defs"]


def definition_index(defs):
    index = {}
    for name in defs:
        index.setdefault(norm(name), []).append(name)
    return index


def definition_for(index, module, struct):
    key = norm("io.k8s." + module.replace("/", ".") + "." + struct)
    names = index.get(key, [])
    if len(names) > 1:
        fail(f"{module}::{struct} matches several definitions: {names}")
    return names[0] if names else None


class Generator:
    def __init__(self, pb, defs, kubectl):
        self.pb, self.defs, self.kubectl = pb, defs, kubectl
        self.report = {"newer than v1.33 (left out)": [],
                       "from kubectl 1.33 (not in k8s-pb 0.9.0)": [],
                       "schema properties without a protobuf field": []}

    def run(self):
        merge_kubectl(self.pb, self.kubectl, self.report)
        index = definition_index(self.defs)
        # Which messages: every k8s-pb struct with a v1.33 definition, plus what they reference.
        self.names = {}
        for key in self.pb:
            d = definition_for(index, *key)
            if d:
                self.names[key] = d
        seen = set(self.names)
        wanted = list(seen)
        while wanted:
            key = wanted.pop()
            for f in self.live(key):
                if f["msg"] and f["msg"] not in seen:
                    if f["msg"] not in self.pb:
                        fail(f"{key[0]}::{key[1]}.{f['rust']} refers to unknown {f['msg']}")
                    seen.add(f["msg"])
                    wanted.append(f["msg"])
        for key in seen - set(self.names):
            # Referenced but without a definition: a struct Go embeds `json:",inline"` (its
            # names are the parent's), or a helper whose JSON form the decoder knows.
            self.names[key] = self.helper_name(key)
        self.props = self.resolution_properties(seen)
        order = sorted(seen, key=lambda k: self.names[k])
        self.position = {k: i for i, k in enumerate(order)}
        messages = [self.message(key) for key in order]

        kinds = []
        for key in order:
            d = self.defs.get(self.names[key]) or {}
            for gvk in d.get("x-kubernetes-group-version-kind", []):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                kinds.append([api_version, gvk["kind"], self.position[key]])
        kinds.sort()
        have = set(self.names.values())
        missing = [n for n, d in sorted(self.defs.items())
                   if d.get("x-kubernetes-group-version-kind") and n not in have]
        return {"messages": messages, "kinds": kinds}, self.report, missing

    def live(self, key):
        """The fields of a message that v1.33 has: all, unless kubectl's descriptor of the
        message lacks some (k8s-pb is built from a newer Kubernetes)."""
        name = self.names.get(key) or self.helper_name(key)
        gogo = self.gogo(name)
        if gogo is None:
            return [f for f in self.pb[key] if f"{name}.{f['rust']}" not in NEWER_OUTSIDE_KUBECTL]
        return [f for f in self.pb[key] if f["tag"] in gogo]

    def gogo(self, definition):
        """kubectl's fields of a message, {tag: field}, or None when kubectl lacks it."""
        m = self.kubectl.get(norm(definition))
        return m["fields"] if m else None

    @staticmethod
    def helper_name(key):
        return "io.k8s." + key[0].replace("/", ".") + "." + key[1]

    def resolution_properties(self, keys):
        """The JSON property names each message's fields are matched against: its definition's,
        or for a struct without one the union of the definitions that embed it inline."""
        props = {k: set(self.defs[self.names[k]].get("properties", {}))
                 for k in keys if self.names[k] in self.defs}
        changed = True
        while changed:
            changed = False
            for parent in list(props):
                for f in self.live(parent):
                    child = f["msg"]
                    if child is None or child in SPECIAL or self.names[child] in self.defs:
                        continue
                    if self.is_inline(f, props[parent]) and not props[parent] <= props.get(child, set()):
                        props[child] = props.get(child, set()) | props[parent]
                        changed = True
        return props

    def is_inline(self, f, parent_props):
        """Whether a message field is a Go struct embedded with `json:",inline"`: its own name is
        no property of the parent, and all its fields (recursively) are."""
        if f["type"] != "message" or f["repeated"] or f["map"] or f["msg"] in SPECIAL:
            return False
        wanted = {norm(p) for p in parent_props}
        if norm(f["rust"]) in wanted:
            return False

        def covered(key, depth):
            for sf in self.live(key):
                if norm(sf["rust"]) in wanted:
                    continue
                if depth < 4 and sf["type"] == "message" and not sf["repeated"] and not sf["map"] \
                        and sf["msg"] not in SPECIAL and covered(sf["msg"], depth + 1):
                    continue
                return False
            return True
        return bool(self.live(f["msg"])) and covered(f["msg"], 0)

    def message(self, key):
        name = self.names[key]
        fields = self.pb[key]
        definition = self.defs.get(name)
        gogo = self.gogo(name)
        special = SPECIAL.get(key)
        out = {"name": name, "special": special[0] if special else "", "fields": []}
        if special:
            got = {f["tag"]: f["type"] for f in fields}
            if got != special[1]:
                fail(f"{name}: k8s-pb has tags {got}, the decoder expects {special[1]}")
        elif key not in self.props:
            # A named Go slice (ExtraValue, Verbs, ...) that protobuf wraps as `repeated T items = 1`.
            if [(f["tag"], f["rust"], f["repeated"]) for f in fields] != [(1, "items", True)]:
                fail(f"{name} has no v1.33 definition, is embedded nowhere and is no list wrapper: "
                     "teach the decoder its JSON")
            out["special"] = "list"
        props = self.props.get(key, set())
        by_norm = {}
        for p in props:
            by_norm.setdefault(norm(p), []).append(p)
        required = set((definition or {}).get("required", []))
        covered = set()
        for f in fields:
            if gogo is not None and f["tag"] not in gogo:
                self.report["newer than v1.33 (left out)"].append(f"{name}.{f['rust']} (tag {f['tag']})")
                continue
            if out["special"]:
                out["fields"].append(self.field(f, f["rust"], False))
                continue
            candidates = by_norm.get(norm(f["rust"]), [])
            if len(candidates) > 1:
                fail(f"{name}.{f['rust']} matches several properties: {candidates}")
            if not candidates and self.is_inline(f, props):
                covered |= self.props.get(f["msg"], set()) & props
                if self.names[f["msg"]] in self.defs:
                    covered |= set(self.defs[self.names[f["msg"]]].get("properties", {}))
                out["fields"].append([f["tag"], "", "message", 8, self.position[f["msg"]]])
                continue
            if not candidates:
                if gogo is None and f"{name}.{f['rust']}" in NEWER_OUTSIDE_KUBECTL:
                    self.report["newer than v1.33 (left out)"].append(f"{name}.{f['rust']} (tag {f['tag']})")
                    continue
                if gogo is None and definition is None:
                    # an embedded struct's field the parents do not have: newer than v1.33
                    self.report["newer than v1.33 (left out)"].append(f"{name}.{f['rust']} (tag {f['tag']})")
                    continue
                fail(f"{name}.{f['rust']} (tag {f['tag']}) matches no property of the v1.33 "
                     f"definition (properties: {sorted(props)})")
            json_name = candidates[0]
            covered.add(json_name)
            keep_zero = json_name in required
            if gogo is not None:
                g = gogo.get(f["tag"])
                if g is None:
                    fail(f"{name}.{json_name} (tag {f['tag']}) is in the v1.33 schema but not in "
                         "kubectl's descriptor")
                check_against_gogo(name, json_name, f, g, self.names)
                keep_zero = keep_zero or g["nullable"]
            else:
                keep_zero = keep_zero or json_name in POINTERS_OUTSIDE_KUBECTL.get(name, ())
            out["fields"].append(self.field(f, json_name, keep_zero))
        if definition is not None and not out["special"]:
            for p in sorted(props - covered - {"apiVersion", "kind"}):
                self.report["schema properties without a protobuf field"].append(f"{name}.{p}")
        out["fields"].sort()
        return out

    def field(self, f, json_name, keep_zero):
        flags = (1 if f["repeated"] else 0) | (2 if f["map"] else 0) | (4 if keep_zero else 0)
        target = self.position[f["msg"]] if f["msg"] else -1
        return [f["tag"], json_name, f["type"], flags, target]


def check_against_gogo(name, json_name, f, g, names):
    where = f"{name}.{json_name} (tag {f['tag']})"
    # Proto names are the Go `protobuf:"...,name=..."` tags, mostly but not always the JSON name
    # (`Webhooks`): the same field either way.
    if norm(g["name"]) != norm(json_name):
        fail(f"{where}: kubectl 1.33 names it {g['name']!r}")
    if g["map"] != f["map"] or g["type"] != f["type"] or g["repeated"] != f["repeated"]:
        fail(f"{where}: {f['type']} repeated={f['repeated']} map={f['map']} in k8s-pb, "
             f"{g['type']} repeated={g['repeated']} map={g['map']} in kubectl")
    if f["msg"]:
        target = names[f["msg"]]
        gogo_target = "io.k8s." + g["type_name"].lstrip(".")[len("k8s.io."):]
        if norm(gogo_target) != norm(target):
            fail(f"{where}: refers to {target} in k8s-pb, {gogo_target} in kubectl")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_pb = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0")))
    ap.add_argument("--k8s-pb", default=default_pb[-1] if default_pb else None)
    ap.add_argument("--kubectl", default=find_kubectl())
    ap.add_argument("--schema", default=os.path.join(DATA, "v1.33-definitions.json.zlib"))
    ap.add_argument("--out", default=os.path.join(DATA, "v1.33-protobuf.json.zlib"))
    ap.add_argument("--check", action="store_true", help="fail if --out differs from the result")
    args = ap.parse_args()
    if not args.k8s_pb or not os.path.isdir(args.k8s_pb):
        fail("k8s-pb 0.9.0 sources not found: pass --k8s-pb (run `cargo fetch` in a crate using it)")
    if not args.kubectl or not os.path.exists(args.kubectl):
        fail("kubectl 1.33 not found beside the kubectl on PATH: pass --kubectl")

    pb = parse_k8s_pb(args.k8s_pb)
    defs = load_schema(args.schema)
    kubectl = kubectl_descriptors(args.kubectl)
    if norm("io.k8s.api.core.v1.Pod") not in kubectl:
        fail(f"{args.kubectl} embeds no k8s.io/api descriptors (is it kubectl 1.33?)")
    table, report, missing = Generator(pb, defs, kubectl).run()
    text = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    packed = zlib.compress(text, 9)
    for title, items in report.items():
        print(f"{title}: {len(items)}", file=sys.stderr)
        for item in items:
            print(f"  {item}", file=sys.stderr)
    print(f"kinds without a protobuf message: {len(missing)}", file=sys.stderr)
    for item in missing:
        print(f"  {item}", file=sys.stderr)
    print(f"{len(table['messages'])} messages, {len(table['kinds'])} kinds, "
          f"{len(text)} bytes, {len(packed)} compressed", file=sys.stderr)
    if args.check:
        current = open(args.out, "rb").read() if os.path.exists(args.out) else b""
        if zlib.decompress(current) != text:
            fail(f"{args.out} is stale: run {os.path.relpath(__file__)}")
        return
    with open(args.out, "wb") as f:
        f.write(packed)


if __name__ == "__main__":
    main()
