//! Objects built field by field in the protobuf encoding client-go's gogo code writes (every
//! non-pointer field present, zero or not), decoded and compared with the JSON kube-apiserver
//! would hold.

use serde_json::{json, Value};

use super::*;

/// A protobuf message under construction.
#[derive(Default, Clone)]
struct Msg(Vec<u8>);

impl Msg {
    fn new() -> Self {
        Msg::default()
    }

    fn key(&mut self, tag: u32, wire_type: u8) {
        self.put_varint(u64::from(tag) << 3 | u64::from(wire_type));
    }

    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(mut self, tag: u32, v: i64) -> Self {
        self.key(tag, 0);
        self.put_varint(v as u64);
        self
    }

    fn bool(self, tag: u32, v: bool) -> Self {
        self.int(tag, i64::from(v))
    }

    fn double(mut self, tag: u32, v: f64) -> Self {
        self.key(tag, 1);
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
        self
    }

    fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        self.key(tag, 2);
        self.put_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Msg) -> Self {
        self.bytes(tag, &m.0)
    }

    /// One entry of a `map<string, string>` field.
    fn entry(self, tag: u32, key: &str, value: &str) -> Self {
        self.msg(tag, Msg::new().str(1, key).str(2, value))
    }

    /// One entry of a map whose values are messages.
    fn entry_msg(self, tag: u32, key: &str, value: Msg) -> Self {
        self.msg(tag, Msg::new().str(1, key).msg(2, value))
    }
}

fn envelope(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let unknown =
        Msg::new().msg(1, Msg::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
    [MAGIC, &unknown.0].concat()
}

fn decode(api_version: &str, kind: &str, raw: Msg) -> Value {
    match decode_protobuf(&envelope(api_version, kind, raw)) {
        Ok(v) => v,
        Err(e) => panic!("decoding {kind}: {e}"),
    }
}

/// `ObjectMeta` as gogo writes a new object's: every string present, the zero
/// `creationTimestamp` as an empty message.
fn object_meta(name: &str) -> Msg {
    Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Msg::new())
}

fn int_or_string_int(v: i64) -> Msg {
    Msg::new().int(1, 0).int(2, v).str(3, "")
}

fn int_or_string_str(s: &str) -> Msg {
    Msg::new().int(1, 1).int(2, 0).str(3, s)
}

fn quantity(s: &str) -> Msg {
    Msg::new().str(1, s)
}

#[test]
fn configmap_with_data_and_binary_data() {
    let raw = Msg::new()
        .msg(1, object_meta("a"))
        .entry(2, "k", "v")
        .entry(2, "empty", "")
        .msg(3, Msg::new().str(1, "bin").bytes(2, &[0xff, 0x00, 0x10]));
    let want = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "v", "empty": ""},
        "binaryData": {"bin": "/wAQ"},
    });
    assert_eq!(decode("v1", "ConfigMap", raw), want);
}

#[test]
fn secret_data_is_base64_and_pointer_false_is_kept() {
    let raw = Msg::new()
        .msg(1, object_meta("s"))
        .msg(2, Msg::new().str(1, "p").bytes(2, b"x"))
        .msg(2, Msg::new().str(1, "none"))
        .str(3, "Opaque")
        .bool(5, false);
    let want = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"p": "eA==", "none": ""},
        "type": "Opaque",
        // `immutable` is a *bool: an explicit false is not "unset"
        "immutable": false,
    });
    assert_eq!(decode("v1", "Secret", raw), want);
}

fn container(name: &str, image: &str, command: &[&str]) -> Msg {
    let mut c = Msg::new().str(1, name).str(2, image);
    for arg in command {
        c = c.str(3, arg);
    }
    // what gogo writes for the zero values of a container kubectl builds
    c.str(5, "")
        .msg(8, Msg::new())
        .str(13, "")
        .str(14, "")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false)
        .str(20, "")
}

fn pod_spec(containers: Vec<Msg>) -> Msg {
    let mut spec = Msg::new();
    for c in containers {
        spec = spec.msg(2, c);
    }
    spec.str(3, "")
        .str(6, "")
        .str(8, "")
        .str(9, "")
        .bool(11, false)
        .bool(12, false)
        .bool(13, false)
        .str(19, "")
}

#[test]
fn deployment_with_replicas_and_int_or_string_surge() {
    let template = Msg::new()
        .msg(1, Msg::new().msg(8, Msg::new()).entry(11, "app", "web"))
        .msg(2, pod_spec(vec![container("busybox", "busybox:1.36", &["httpd", "-f"])]));
    let strategy = Msg::new()
        .str(1, "RollingUpdate")
        .msg(2, Msg::new().msg(1, int_or_string_str("25%")).msg(2, int_or_string_int(2)));
    let spec = Msg::new()
        .int(1, 3)
        .msg(2, Msg::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, strategy)
        .int(5, 0)
        .bool(7, false);
    let meta = object_meta("web").entry(11, "app", "web").msg(11, Msg::new());
    let raw = Msg::new().msg(1, meta).msg(2, spec).msg(3, Msg::new());
    let got = decode("apps/v1", "Deployment", raw);
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        // a map entry with neither key nor value is the "" key with "" value
        "metadata": {"name": "web", "labels": {"app": "web", "": ""}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "busybox",
                    "image": "busybox:1.36",
                    "command": ["httpd", "-f"],
                    "resources": {},
                }]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}},
        },
        "status": {},
    });
    assert_eq!(got, want);
}

#[test]
fn zero_replicas_is_kept_because_replicas_is_a_pointer() {
    let raw = Msg::new().msg(1, object_meta("web")).msg(2, Msg::new().int(1, 0).int(5, 0));
    let got = decode("apps/v1", "Deployment", raw);
    assert_eq!(got["spec"], json!({"replicas": 0}));
}

#[test]
fn pod_with_resources_and_creation_timestamp() {
    let resources = Msg::new()
        .entry_msg(1, "memory", quantity("64Mi"))
        .entry_msg(2, "cpu", quantity("100m"))
        .entry_msg(2, "memory", quantity("32Mi"));
    let c = Msg::new().str(1, "main").str(2, "busybox:1.36").msg(8, resources).bool(16, true);
    let security = Msg::new().int(2, 1000).bool(3, false).int(4, 5).int(4, 6);
    let spec = pod_spec(vec![c]).msg(14, security).int(4, 30);
    let meta = Msg::new().str(1, "p").str(3, "default").msg(8, Msg::new().int(1, 1_704_164_645));
    let got = decode("v1", "Pod", Msg::new().msg(1, meta).msg(2, spec));
    let want = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2024-01-02T03:04:05Z"},
        "spec": {
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "32Mi"}},
                "stdin": true,
            }],
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"runAsUser": 1000, "runAsNonRoot": false, "supplementalGroups": [5, 6]},
        },
    });
    assert_eq!(got, want);
}

#[test]
fn packed_repeated_integers_decode_like_unpacked_ones() {
    let mut packed = Msg::new();
    packed.put_varint(5);
    packed.put_varint(300);
    let security = Msg::new().bytes(4, &packed.0).int(4, 7);
    let got = decode("v1", "Pod", Msg::new().msg(2, Msg::new().msg(14, security)));
    assert_eq!(got["spec"]["securityContext"]["supplementalGroups"], json!([5, 300, 7]));
}

#[test]
fn service_with_int_target_port() {
    let port = Msg::new().str(1, "").str(2, "TCP").int(3, 80).msg(4, int_or_string_int(8080)).int(5, 0);
    let spec = Msg::new().msg(1, port).entry(2, "app", "web").str(3, "").str(4, "ClusterIP").str(7, "");
    let raw = Msg::new().msg(1, object_meta("web")).msg(2, spec).msg(3, Msg::new().msg(1, Msg::new()));
    let want = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    });
    assert_eq!(decode("v1", "Service", raw), want);
}

#[test]
fn self_subject_review_with_empty_status() {
    // kubectl auth whoami posts an empty SelfSubjectReview.
    let raw = Msg::new()
        .msg(1, Msg::new().msg(8, Msg::new()))
        .msg(2, Msg::new().msg(1, Msg::new().str(1, "").str(2, "")));
    let want = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {},
        "status": {"userInfo": {}},
    });
    assert_eq!(decode("authentication.k8s.io/v1", "SelfSubjectReview", raw), want);
}

#[test]
fn token_review_extra_values_are_string_lists() {
    let user = Msg::new()
        .str(1, "alice")
        .str(3, "devs")
        .entry_msg(4, "scopes", Msg::new().str(1, "a").str(1, "b"))
        .entry_msg(4, "none", Msg::new());
    let raw = Msg::new().msg(2, Msg::new().str(1, "tok")).msg(3, Msg::new().bool(1, true).msg(2, user));
    let got = decode("authentication.k8s.io/v1", "TokenReview", raw);
    let want = json!({
        "token": "tok",
    });
    assert_eq!(got["spec"], want);
    assert_eq!(
        got["status"],
        json!({"authenticated": true, "user": {"username": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"], "none": []}}})
    );
}

#[test]
fn raw_extensions_fields_v1_and_micro_times_are_embedded_json() {
    let managed = Msg::new()
        .str(1, "kubectl")
        .str(2, "Update")
        .str(3, "v1")
        .msg(4, Msg::new().int(1, 1_704_164_645).int(2, 500_000_000))
        .str(6, "FieldsV1")
        .msg(7, Msg::new().bytes(1, br#"{"f:data":{".":{}}}"#));
    let meta = Msg::new().str(1, "rev").msg(17, managed);
    let raw = Msg::new().msg(1, meta).msg(2, Msg::new().bytes(1, br#"{"spec":{"x":1}}"#)).int(3, 0);
    let got = decode("apps/v1", "ControllerRevision", raw);
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "rev", "managedFields": [{
            "manager": "kubectl",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-01-02T03:04:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}},
        }]},
        "data": {"spec": {"x": 1}},
        // revision is required: zero stays
        "revision": 0,
    });
    assert_eq!(got, want);

    let lease = Msg::new()
        .msg(2, Msg::new().str(1, "node-a").msg(3, Msg::new().int(1, 1_704_164_645).int(2, 123_456_789)));
    let got = decode("coordination.k8s.io/v1", "Lease", lease);
    assert_eq!(
        got["spec"],
        json!({"holderIdentity": "node-a", "acquireTime": "2024-01-02T03:04:05.123456Z"})
    );
}

#[test]
fn raw_extension_may_hold_a_protobuf_object() {
    let inner = envelope("v1", "ConfigMap", Msg::new().msg(1, object_meta("a")).entry(2, "k", "v"));
    let raw = Msg::new().msg(1, object_meta("rev")).msg(2, Msg::new().bytes(1, &inner)).int(3, 2);
    let got = decode("apps/v1", "ControllerRevision", raw);
    assert_eq!(
        got["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
    );
}

#[test]
fn inline_structs_join_their_parent() {
    // Probe embeds ProbeHandler, Volume embeds VolumeSource.
    let probe = Msg::new().msg(1, Msg::new().msg(1, Msg::new().str(1, "true"))).int(4, 10).int(2, 0);
    let volume =
        Msg::new().str(1, "data").msg(2, Msg::new().msg(2, Msg::new().str(1, "").msg(2, quantity("1Gi"))));
    let c = Msg::new().str(1, "main").msg(10, probe);
    let got = decode("v1", "Pod", Msg::new().msg(2, Msg::new().msg(1, volume).msg(2, c)));
    assert_eq!(
        got["spec"],
        json!({
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
            "containers": [{"name": "main", "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10}}],
        })
    );
}

#[test]
fn crd_schemas_decode_props_or_bool_and_doubles() {
    let props = Msg::new()
        .str(5, "object")
        .double(9, 2.5)
        .double(11, 1.0)
        .entry_msg(29, "size", Msg::new().str(5, "integer"))
        .msg(30, Msg::new().bool(1, true))
        .bool(38, false);
    let version = Msg::new().str(1, "v1").bool(2, true).bool(3, true).msg(4, Msg::new().msg(1, props));
    let names = Msg::new().str(1, "widgets").str(2, "widget").str(4, "Widget");
    let spec = Msg::new().str(1, "example.com").msg(3, names).str(4, "Namespaced").msg(7, version);
    let got = decode("apiextensions.k8s.io/v1", "CustomResourceDefinition", Msg::new().msg(2, spec));
    let schema = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        schema,
        &json!({
            "type": "object",
            "maximum": 2.5,
            "minimum": 1,
            "properties": {"size": {"type": "integer"}},
            "additionalProperties": true,
            "x-kubernetes-preserve-unknown-fields": false,
        })
    );
    assert_eq!(got["spec"]["names"], json!({"plural": "widgets", "singular": "widget", "kind": "Widget"}));
}

#[test]
fn unknown_field_tags_are_skipped() {
    let raw = Msg::new()
        .msg(1, object_meta("a").str(99, "future").int(100, 7))
        .entry(2, "k", "v")
        .double(77, 1.5)
        .bytes(78, b"\x01\x02");
    let got = decode("v1", "ConfigMap", raw);
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
    );
}

#[test]
fn a_repeated_singular_message_is_merged() {
    let raw = Msg::new().msg(1, Msg::new().str(1, "a")).msg(1, Msg::new().str(3, "ns"));
    let got = decode("v1", "ConfigMap", raw);
    assert_eq!(got["metadata"], json!({"name": "a", "namespace": "ns"}));
}

#[test]
fn delete_options_decode_in_every_group() {
    let raw = Msg::new().int(1, 0).str(4, "Background");
    let got = decode("apps/v1", "DeleteOptions", raw);
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Background"})
    );
}

fn error_of(body: &[u8]) -> ProtobufError {
    match decode_protobuf(body) {
        Ok(v) => panic!("decoded {v}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_bodies_are_client_errors() {
    let e = error_of(b"{\"kind\":\"Pod\"}");
    assert_eq!(e, ProtobufError::NoMagic);

    let e = error_of(&envelope("v1", "Widget", Msg::new()));
    assert_eq!(e.to_string(), "no kind \"Widget\" is registered for version \"v1\" in protobuf");
    assert_eq!(e.http_status(), 400);

    // a length running past the end
    let mut body = envelope("v1", "ConfigMap", Msg::new().msg(1, object_meta("a")));
    body.truncate(body.len() - 3);
    assert!(matches!(error_of(&body), ProtobufError::Malformed { .. }), "{}", error_of(&body));

    // a string field sent as a varint
    let e = error_of(&envelope("v1", "ConfigMap", Msg::new().msg(1, Msg::new().int(1, 5))));
    assert_eq!(
        e.to_string(),
        "malformed protobuf in io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.name: unexpected wire type 0"
    );

    let e = error_of(&envelope(
        "v1",
        "ConfigMap",
        Msg::new().msg(1, Msg::new().msg(8, Msg::new().int(1, i64::MAX))),
    ));
    assert!(matches!(e, ProtobufError::InvalidValue { .. }), "{e}");

    let bad_json = Msg::new().msg(2, Msg::new().bytes(1, b"{nope"));
    assert!(matches!(
        error_of(&envelope("apps/v1", "ControllerRevision", bad_json)),
        ProtobufError::InvalidValue { .. }
    ));

    let gzip = [MAGIC, &Msg::new().msg(1, Msg::new().str(1, "v1").str(2, "Pod")).str(3, "gzip").0].concat();
    assert_eq!(error_of(&gzip), ProtobufError::UnsupportedEncoding("gzip".into()));
    let yaml =
        [MAGIC, &Msg::new().msg(1, Msg::new().str(1, "v1").str(2, "Pod")).str(4, "application/yaml").0]
            .concat();
    assert_eq!(error_of(&yaml), ProtobufError::UnsupportedEncoding("application/yaml".into()));
}

#[test]
fn deep_nesting_is_refused() {
    // JSONSchemaProps.not nests without bound.
    let mut props = Msg::new().str(5, "string");
    for _ in 0..MAX_DEPTH {
        props = Msg::new().msg(28, props);
    }
    let version = Msg::new().str(1, "v1").msg(4, Msg::new().msg(1, props));
    let body = envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        Msg::new().msg(2, Msg::new().msg(7, version)),
    );
    assert_eq!(error_of(&body), ProtobufError::TooDeep);
}

#[test]
fn every_kind_of_the_schema_has_a_message() {
    let schema = crate::Schema::builtin();
    let mut missing = Vec::new();
    for name in schema.definition_names() {
        let Some(def) = schema.definition(name) else { continue };
        for gvk in def.group_version_kinds() {
            let api_version = if gvk.group.is_empty() {
                gvk.version.to_string()
            } else {
                format!("{}/{}", gvk.group, gvk.version)
            };
            if !protobuf_decodes(&api_version, &gvk.kind) {
                missing.push(format!("{api_version} {}", gvk.kind));
            }
        }
    }
    assert!(missing.is_empty(), "kinds without a protobuf message: {missing:?}");
}

/// Bodies kubectl 1.33.1 sent (captured on the wire), with the JSON kube-apiserver stores for
/// them (less the `creationTimestamp: null` Go writes for an unset time).
#[test]
fn bodies_real_kubectl_sends_decode_to_the_objects_it_meant() {
    let cases = [
        (
            &include_bytes!("testdata/kubectl-1.33-create-configmap.bin")[..],
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-create-secret.bin"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"p": "eA=="}}),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-create-deployment.bin"),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "busybox",
                            "image": "busybox:1.36",
                            "command": ["httpd", "-f"],
                            "resources": {},
                        }]},
                    },
                    "strategy": {},
                },
                "status": {},
            }),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-create-service.bin"),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "web"},
                    "type": "ClusterIP",
                },
                "status": {"loadBalancer": {}},
            }),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-create-job.bin"),
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {"template": {
                    "metadata": {},
                    "spec": {
                        "containers": [{"name": "j", "image": "busybox:1.36", "command": ["true"], "resources": {}}],
                        "restartPolicy": "Never",
                    },
                }},
                "status": {},
            }),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-create-token.bin"),
            // TokenRequestStatus fields are required (no omitempty): Go writes them too
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "metadata": {},
                "spec": {},
                "status": {"token": "", "expirationTimestamp": null},
            }),
        ),
        (
            include_bytes!("testdata/kubectl-1.33-auth-whoami.bin"),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {},
                "status": {"userInfo": {}},
            }),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(decode_protobuf(body).ok(), Some(want));
    }
}
