//! (b) Structure-aware: AttachedResource-shaped (and target-labelled plain) objects with
//! random field types and values, wrapped in an API-server-shaped AdmissionReview and decided
//! by both webhooks, the way the API server chains them: mutate, apply the patch, mutate
//! again (reinvocation must change nothing), then validate the mutated object.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use tether::admission::Webhook;
use tether::policy::attached;
use tether_fuzz::{check_answer, env, BUDGET};

/// Number tokens serde_json cannot produce from a `Value`; spliced into the body as text.
const RAW_NUMBERS: [&str; 10] = [
    "1e400",
    "-0",
    "-0.0",
    "18446744073709551616",
    "-9223372036854775809",
    "2.0",
    "1E2",
    "0.5",
    "1e-400",
    "123456789012345678901234567890",
];

const STRINGS: [&str; 16] = [
    "",
    " ",
    "web",
    "web-v2",
    "payments",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscaler",
    " HorizontalPodAutoscaler ",
    "Deployment",
    "autoscaling/v2",
    "tether.dev/workload",
    "tether.dev/target",
    "{{ .Version }}",
    "{{ .version }}",
    "{{",
    "}}{{.WorkloadName",
];

const KINDS: [(&str, &str, &str, &str); 9] = [
    (
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
    ),
    (
        "tether.dev",
        "v1alpha1",
        "attachedresource",
        "attachedresources",
    ),
    (
        "tether.dev",
        "v1alpha1",
        " AttachedResource",
        "attachedresources",
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
    ("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
    (
        "autoscaling.k8s.io",
        "v1",
        "VerticalPodAutoscaler",
        "verticalpodautoscalers",
    ),
    ("example.com", "v1", "Widget", "widgets"),
    ("tether.dev", "v1alpha1", "AppDomain", "appdomains"),
];

const OBJECT_KINDS: [(&str, &str); 8] = [
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "horizontalPodAutoscaler"),
    ("autoscaling/v2", "HorizontalPodAutoscaler "),
    ("apps/v1", "Deployment"),
    ("apps/v1", "deployment"),
    ("v1", "Namespace"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

#[derive(Debug, Arbitrary)]
enum FStr {
    Table(u8),
    Raw(String),
    /// A character repeated: long names, long label values.
    Repeat(char, u16),
    /// Table strings glued together: placeholders next to text.
    Concat(u8, u8, u8),
}

impl FStr {
    fn build(&self) -> String {
        match self {
            FStr::Table(i) => STRINGS[*i as usize % STRINGS.len()].to_string(),
            FStr::Raw(s) => s.clone(),
            FStr::Repeat(c, n) => std::iter::repeat(*c).take(*n as usize % 400).collect(),
            FStr::Concat(a, b, c) => [a, b, c]
                .iter()
                .map(|i| STRINGS[**i as usize % STRINGS.len()])
                .collect(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum FVal {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    RawNumber(u8),
    Str(FStr),
    Arr(Vec<FVal>),
    Obj(Vec<(FStr, FVal)>),
}

/// Builds JSON; raw number tokens become marker strings replaced after serialisation.
struct Builder {
    raw: Vec<&'static str>,
}

impl Builder {
    fn val(&mut self, v: &FVal, depth: usize) -> Value {
        if depth > 8 {
            return Value::Null;
        }
        match v {
            FVal::Null => Value::Null,
            FVal::Bool(b) => json!(b),
            FVal::Int(i) => json!(i),
            FVal::UInt(u) => json!(u),
            FVal::Float(f) => json!(f), // NaN and infinities become null
            FVal::RawNumber(i) => {
                let marker = format!("@@RAW{}@@", self.raw.len());
                self.raw.push(RAW_NUMBERS[*i as usize % RAW_NUMBERS.len()]);
                Value::String(marker)
            }
            FVal::Str(s) => Value::String(s.build()),
            FVal::Arr(a) => Value::Array(a.iter().map(|x| self.val(x, depth + 1)).collect()),
            FVal::Obj(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.build(), self.val(x, depth + 1)))
                    .collect(),
            ),
        }
    }

    fn field(&mut self, f: &Field, m: &mut Map<String, Value>, key: &str) {
        match f {
            Field::Absent => {}
            Field::Str(s) => {
                m.insert(key.into(), Value::String(s.build()));
            }
            Field::Val(v) => {
                let v = self.val(v, 2);
                m.insert(key.into(), v);
            }
        }
    }

    /// The body with the raw number markers replaced by their tokens.
    fn finish(&self, body: &Value) -> Vec<u8> {
        let mut text = body.to_string();
        for (i, tok) in self.raw.iter().enumerate() {
            text = text.replacen(&format!("\"@@RAW{i}@@\""), tok, 1);
        }
        text.into_bytes()
    }
}

#[derive(Debug, Arbitrary)]
enum Field {
    Absent,
    Str(FStr),
    Val(FVal),
}

#[derive(Debug, Arbitrary)]
struct Inner {
    min_replicas: Field,
    max_replicas: Field,
    scale_target_ref: Field,
    target_ref: Field,
    selector: Field,
    match_labels: Option<Field>,
    extra: Vec<(FStr, FVal)>,
}

#[derive(Debug, Arbitrary)]
struct Object {
    kind: u8,
    api_version: Option<Field>,
    kind_field: Option<Field>,
    metadata: Option<Field>,
    name: Field,
    namespace: Field,
    generate_name: Field,
    labels: Vec<(FStr, FStr)>,
    spec: Option<Inner>,
    spec_override: Option<FVal>,
}

#[derive(Debug, Arbitrary)]
struct Spec {
    workload: Field,
    workload_ref: Option<FVal>,
    object: Option<Object>,
    object_override: Option<FVal>,
    spec_override: Option<FVal>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    kind: u8,
    operation: u8,
    namespace: Option<FStr>,
    name: FStr,
    labels: Vec<(FStr, FStr)>,
    target_label: Option<Field>,
    workload_label: Option<Field>,
    metadata_override: Option<FVal>,
    spec: Spec,
    old_spec: Option<Spec>,
    username: FStr,
    groups: Vec<FStr>,
    /// Replace one request field with an arbitrary value.
    request_override: Option<(u8, FVal)>,
}

const REQUEST_FIELDS: [&str; 8] = [
    "name",
    "namespace",
    "operation",
    "userInfo",
    "dryRun",
    "kind",
    "object",
    "oldObject",
];

fn inner(b: &mut Builder, i: &Inner) -> Value {
    let mut m = Map::new();
    b.field(&i.min_replicas, &mut m, "minReplicas");
    b.field(&i.max_replicas, &mut m, "maxReplicas");
    b.field(&i.scale_target_ref, &mut m, "scaleTargetRef");
    b.field(&i.target_ref, &mut m, "targetRef");
    b.field(&i.selector, &mut m, "selector");
    if let Some(ml) = &i.match_labels {
        let mut sel = Map::new();
        b.field(ml, &mut sel, "matchLabels");
        m.insert("selector".into(), Value::Object(sel));
    }
    for (k, v) in &i.extra {
        let v = b.val(v, 3);
        m.insert(k.build(), v);
    }
    Value::Object(m)
}

fn object(b: &mut Builder, o: &Object) -> Value {
    let (av, kind) = OBJECT_KINDS[o.kind as usize % OBJECT_KINDS.len()];
    let mut m = Map::new();
    match &o.api_version {
        None => {
            m.insert("apiVersion".into(), json!(av));
        }
        Some(f) => b.field(f, &mut m, "apiVersion"),
    }
    match &o.kind_field {
        None => {
            m.insert("kind".into(), json!(kind));
        }
        Some(f) => b.field(f, &mut m, "kind"),
    }
    match &o.metadata {
        Some(f) => b.field(f, &mut m, "metadata"),
        None => {
            let mut meta = Map::new();
            b.field(&o.name, &mut meta, "name");
            b.field(&o.namespace, &mut meta, "namespace");
            b.field(&o.generate_name, &mut meta, "generateName");
            if !o.labels.is_empty() {
                let labels: Map<String, Value> = o
                    .labels
                    .iter()
                    .map(|(k, v)| (k.build(), Value::String(v.build())))
                    .collect();
                meta.insert("labels".into(), Value::Object(labels));
            }
            m.insert("metadata".into(), Value::Object(meta));
        }
    }
    if let Some(v) = &o.spec_override {
        let v = b.val(v, 1);
        m.insert("spec".into(), v);
    } else if let Some(i) = &o.spec {
        m.insert("spec".into(), inner(b, i));
    }
    Value::Object(m)
}

fn spec(b: &mut Builder, s: &Spec) -> Value {
    if let Some(v) = &s.spec_override {
        return b.val(v, 1);
    }
    let mut m = Map::new();
    match &s.workload_ref {
        Some(v) => {
            let v = b.val(v, 2);
            m.insert("workloadRef".into(), v);
        }
        None => {
            let mut w = Map::new();
            b.field(&s.workload, &mut w, "name");
            m.insert("workloadRef".into(), Value::Object(w));
        }
    }
    if let Some(v) = &s.object_override {
        let v = b.val(v, 2);
        m.insert("object".into(), v);
    } else if let Some(o) = &s.object {
        m.insert("object".into(), object(b, o));
    }
    Value::Object(m)
}

fn top_object(b: &mut Builder, input: &Input, s: &Spec, av: &str, kind: &str, ns: &Value) -> Value {
    let mut labels: Map<String, Value> = input
        .labels
        .iter()
        .map(|(k, v)| (k.build(), Value::String(v.build())))
        .collect();
    if let Some(f) = &input.target_label {
        b.field(f, &mut labels, "tether.dev/target");
    }
    if let Some(f) = &input.workload_label {
        b.field(f, &mut labels, "tether.dev/workload");
    }
    let metadata = match &input.metadata_override {
        Some(v) => b.val(v, 1),
        None => json!({
            "name": input.name.build(),
            "namespace": ns,
            "uid": "11111111-2222-3333-4444-555555555555",
            "labels": labels,
        }),
    };
    json!({"apiVersion": av, "kind": kind, "metadata": metadata, "spec": spec(b, s)})
}

fn review_body(b: &mut Builder, input: &Input, object: &Value, old: Option<&Value>) -> Vec<u8> {
    let (group, version, kind, resource) = KINDS[input.kind as usize % KINDS.len()];
    let op = ["CREATE", "UPDATE", "DELETE", "CONNECT"][input.operation as usize % 4];
    let ns = input
        .namespace
        .as_ref()
        .map(|n| json!(n.build()))
        .unwrap_or(json!("payments"));
    let mut req = json!({
        "uid": "fuzz-uid",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": input.name.build(),
        "namespace": ns,
        "operation": op,
        "userInfo": {
            "username": input.username.build(),
            "groups": input.groups.iter().map(FStr::build).collect::<Vec<_>>(),
        },
        "object": if op == "DELETE" { Value::Null } else { object.clone() },
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": false,
    });
    if let Some((i, v)) = &input.request_override {
        let v = b.val(v, 1);
        req[REQUEST_FIELDS[*i as usize % REQUEST_FIELDS.len()]] = v;
    }
    b.finish(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}),
    )
}

fn patch_of(answer_body: &[u8]) -> Option<json_patch::Patch> {
    let v: Value = serde_json::from_slice(answer_body).ok()?;
    let p = v["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(p).ok()?;
    serde_json::from_slice(&raw).ok()
}

fuzz_target!(|input: Input| {
    let env = env();
    let mut b = Builder { raw: Vec::new() };
    let (group, version, kind, _) = KINDS[input.kind as usize % KINDS.len()];
    let av = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let ns = input
        .namespace
        .as_ref()
        .map(|n| json!(n.build()))
        .unwrap_or(json!("payments"));
    let object = top_object(&mut b, &input, &input.spec, &av, kind, &ns);
    let old = input
        .old_spec
        .as_ref()
        .map(|s| top_object(&mut b, &input, s, &av, kind, &ns));
    let body = review_body(&mut b, &input, &object, old.as_ref());
    let has_raw = !b.raw.is_empty();

    for adm in [&env.rbac, &env.open] {
        // Mutate.
        let out = env.rt.block_on(adm.review(Webhook::Mutate, &body, BUDGET));
        let mutated = match &out {
            Ok(a) if a.allowed && !has_raw && input.request_override.is_none() => patch_of(&a.body)
                .map(|p| {
                    let mut o = object.clone();
                    json_patch::patch(&mut o, &p).expect("patch applies (checked below too)");
                    o
                }),
            _ => None,
        };
        check_answer(Webhook::Mutate, &body, out);

        // Validate what the API server would store.
        let current = mutated.clone().unwrap_or_else(|| object.clone());
        let vbody = if mutated.is_some() {
            let mut b2 = Builder { raw: Vec::new() };
            review_body(&mut b2, &input, &current, old.as_ref())
        } else {
            body.clone()
        };
        if let Some(m) = &mutated {
            // Reinvocation: mutating the mutated object changes nothing more.
            let again = env.rt.block_on(adm.review(Webhook::Mutate, &vbody, BUDGET));
            let again = again.expect("mutated body still parses");
            if let Some(p) = patch_of(&again.body) {
                let mut o = m.clone();
                json_patch::patch(&mut o, &p).expect("second patch applies");
                assert_eq!(&o, m, "mutation is not idempotent");
            }
        }
        let out = env
            .rt
            .block_on(adm.review(Webhook::Validate, &vbody, BUDGET));
        if let Ok(a) = &out {
            // An allowed AttachedResource CREATE has a spec the pure rules accept.
            if a.allowed
                && group == "tether.dev"
                && kind == "AttachedResource"
                && input.operation % 4 == 0
                && input.request_override.is_none()
                && !has_raw
            {
                let spec = current.get("spec").map(tether::borrowed_json::Value::from);
                let violations = attached::validate_spec(spec.as_ref(), &adm.handlers.kinds);
                assert!(violations.is_empty(), "allowed despite {violations:?}");
            }
        }
        check_answer(Webhook::Validate, &vbody, out);
    }
});
