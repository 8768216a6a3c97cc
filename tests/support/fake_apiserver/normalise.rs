//! What kube-apiserver does to an object between decoding it and storing it, for the kinds
//! tether's tests meet: defaulting, canonical values (resource quantities), the typed decode
//! of built-ins (nulls dropped, empty `omitempty` metadata maps dropped) and the strategy
//! validation that answers 422 `Invalid` with `details.causes`.
//!
//! Pure functions over `serde_json::Value`; the fake calls [`normalise`] then [`validate`] on
//! every write, in that order (upstream: decode+default, ..., strategy validation).

use serde_json::{json, Map, Value};

/// One field error, as `k8s.io/apimachinery/pkg/util/validation/field.Error` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldErr {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    /// Dotted path, e.g. `metadata.labels`.
    pub field: String,
    /// The message without the field, e.g. `Invalid value: "x": must be ...`.
    pub message: String,
}

impl FieldErr {
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        FieldErr {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        FieldErr {
            reason: "FieldValueRequired",
            field: field.to_string(),
            message: if detail.is_empty() {
                "Required value".to_string()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldErr {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `field: message`, as in a Status message.
    pub fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Groups served by kube-apiserver itself (not CRDs or aggregated APIs). Their LIST items
/// carry no `apiVersion`/`kind`, and their objects are decoded into typed Go structs.
pub const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "autoscaling",
    "batch",
    "policy",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

// ---------------------------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QFormat {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// The canonical form kube-apiserver stores for a resource quantity
/// (`resource.Quantity` `CanonicalizeBytes`): `"1000m"` -> `"1"`, `"0.5"` -> `"500m"`,
/// `"2000"` -> `"2k"`, `"1024Mi"` -> `"1Gi"`, `"1.5Gi"` -> `"1536Mi"`, `"1e3"` stays.
/// Precision below `1n` is rounded up (away from zero). `None` when it does not parse.
pub fn canonical_quantity(s: &str) -> Option<String> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut exp10: i32 = -(frac_part.len() as i32);
    let (format, bin_pow) = match suffix {
        "" => (QFormat::DecimalSi, 0),
        "n" => (QFormat::DecimalSi, -9),
        "u" => (QFormat::DecimalSi, -6),
        "m" => (QFormat::DecimalSi, -3),
        "k" => (QFormat::DecimalSi, 3),
        "M" => (QFormat::DecimalSi, 6),
        "G" => (QFormat::DecimalSi, 9),
        "T" => (QFormat::DecimalSi, 12),
        "P" => (QFormat::DecimalSi, 15),
        "E" => (QFormat::DecimalSi, 18),
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let k = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .iter()
                .position(|x| *x == suffix)? as u32
                + 1;
            (QFormat::BinarySi, (10 * k) as i32)
        }
        e if e.starts_with(['e', 'E']) => {
            let n: i32 = e[1..].parse().ok()?;
            (QFormat::DecimalExponent, n)
        }
        _ => return None,
    };
    match format {
        QFormat::BinarySi => mantissa = mantissa.checked_mul(1i128 << bin_pow)?,
        _ => exp10 += bin_pow,
    }
    // Below nano precision: round up to 1n (inf.RoundUp, away from zero).
    if exp10 < -9 {
        let shift = (-9 - exp10) as u32;
        let div = 10i128.checked_pow(shift)?;
        let rounded_up = mantissa % div != 0;
        mantissa = mantissa / div + i128::from(rounded_up);
        exp10 = -9;
    }
    if mantissa == 0 {
        return Some("0".into());
    }
    let sign = if negative { "-" } else { "" };
    let mut format = format;
    if format == QFormat::BinarySi {
        // |value| < 1024, or not a whole number: shown as DecimalSI (no rounding).
        let whole = exp10 >= 0 || mantissa % 10i128.pow((-exp10) as u32) == 0;
        let value = if exp10 >= 0 {
            mantissa.checked_mul(10i128.checked_pow(exp10 as u32)?)?
        } else {
            mantissa / 10i128.pow((-exp10) as u32)
        };
        if value < 1024 || !whole {
            format = QFormat::DecimalSi;
        } else {
            let (mut v, mut k) = (value, 0usize);
            while v % 1024 == 0 && k < 6 {
                v /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return Some(format!("{sign}{v}{suffix}"));
        }
    }
    // Decimal: strip factors of ten, then make the exponent a multiple of three.
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exp10 += 1;
    }
    match exp10.rem_euclid(3) {
        1 => {
            mantissa = mantissa.checked_mul(10)?;
            exp10 -= 1;
        }
        2 => {
            mantissa = mantissa.checked_mul(100)?;
            exp10 -= 2;
        }
        _ => {}
    }
    let suffix = match (format, exp10) {
        (QFormat::DecimalExponent, 0) => String::new(),
        (QFormat::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 0) => String::new(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    Some(format!("{sign}{mantissa}{suffix}"))
}

// ---------------------------------------------------------------------------------------------
// Path patterns
// ---------------------------------------------------------------------------------------------

/// Visits every value at a dotted pattern: `[]` walks a list, `*` every value of a map.
fn visit_mut(v: &mut Value, pattern: &[&str], f: &mut dyn FnMut(&mut Value)) {
    let Some((head, tail)) = pattern.split_first() else {
        f(v);
        return;
    };
    match (*head, v) {
        ("[]", Value::Array(items)) => items.iter_mut().for_each(|i| visit_mut(i, tail, f)),
        ("*", Value::Object(m)) => m.values_mut().for_each(|i| visit_mut(i, tail, f)),
        (key, Value::Object(m)) => {
            if let Some(child) = m.get_mut(key) {
                visit_mut(child, tail, f);
            }
        }
        _ => {}
    }
}

/// Like [`visit_mut`], read-only, with the concrete dotted path (`spec.containers[0].x`).
fn visit(v: &Value, pattern: &[&str], path: String, f: &mut dyn FnMut(&str, &Value)) {
    let Some((head, tail)) = pattern.split_first() else {
        f(&path, v);
        return;
    };
    match (*head, v) {
        ("[]", Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, tail, format!("{path}[{i}]"), f);
            }
        }
        ("*", Value::Object(m)) => {
            for (k, item) in m {
                visit(item, tail, format!("{path}[{k}]"), f);
            }
        }
        (key, Value::Object(m)) => {
            if let Some(child) = m.get(key) {
                let p = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                visit(child, tail, p, f);
            }
        }
        _ => {}
    }
}

/// Where a pod spec sits in each workload kind.
fn pod_spec_paths(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "Pod" => &[&["spec"]],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &[&["spec", "template", "spec"]],
        "CronJob" => &[&["spec", "jobTemplate", "spec", "template", "spec"]],
        _ => &[],
    }
}

/// Quantity-typed fields per kind (under a pod spec for workloads).
fn quantity_patterns(kind: &str) -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = Vec::new();
    for base in pod_spec_paths(kind) {
        for c in ["containers", "initContainers"] {
            for rl in ["limits", "requests"] {
                let mut p = base.to_vec();
                p.extend([c, "[]", "resources", rl, "*"]);
                out.push(p);
            }
        }
        for rl in ["limits", "requests"] {
            let mut p = base.to_vec();
            p.extend(["resources", rl, "*"]);
            out.push(p);
        }
        let mut p = base.to_vec();
        p.extend(["overhead", "*"]);
        out.push(p);
        let mut p = base.to_vec();
        p.extend(["volumes", "[]", "emptyDir", "sizeLimit"]);
        out.push(p);
    }
    match kind {
        "HorizontalPodAutoscaler" => {
            for src in [
                "resource",
                "containerResource",
                "pods",
                "object",
                "external",
            ] {
                for f in ["value", "averageValue"] {
                    out.push(vec!["spec", "metrics", "[]", src, "target", f]);
                    out.push(vec!["status", "currentMetrics", "[]", src, "current", f]);
                }
            }
        }
        "StatefulSet" => {
            for rl in ["limits", "requests"] {
                out.push(vec![
                    "spec",
                    "volumeClaimTemplates",
                    "[]",
                    "spec",
                    "resources",
                    rl,
                    "*",
                ]);
            }
        }
        "PersistentVolumeClaim" => {
            for rl in ["limits", "requests"] {
                out.push(vec!["spec", "resources", rl, "*"]);
            }
        }
        "ResourceQuota" => {
            out.push(vec!["spec", "hard", "*"]);
            out.push(vec!["status", "hard", "*"]);
            out.push(vec!["status", "used", "*"]);
        }
        "LimitRange" => {
            for f in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                out.push(vec!["spec", "limits", "[]", f, "*"]);
            }
        }
        _ => {}
    }
    out
}

/// Int-or-string fields per kind (`intstr.IntOrString`).
fn int_or_string_patterns(kind: &str) -> Vec<Vec<&'static str>> {
    match kind {
        "PodDisruptionBudget" => vec![vec!["spec", "minAvailable"], vec!["spec", "maxUnavailable"]],
        "Deployment" => vec![
            vec!["spec", "strategy", "rollingUpdate", "maxSurge"],
            vec!["spec", "strategy", "rollingUpdate", "maxUnavailable"],
        ],
        "DaemonSet" => vec![
            vec!["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
            vec!["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
        ],
        "StatefulSet" => vec![vec![
            "spec",
            "updateStrategy",
            "rollingUpdate",
            "maxUnavailable",
        ]],
        _ => vec![],
    }
}

/// int32 fields per kind: a string or a fraction there does not decode (400).
fn int_patterns(kind: &str) -> Vec<Vec<&'static str>> {
    match kind {
        "HorizontalPodAutoscaler" => vec![
            vec!["spec", "minReplicas"],
            vec!["spec", "maxReplicas"],
            vec![
                "spec",
                "metrics",
                "[]",
                "resource",
                "target",
                "averageUtilization",
            ],
            vec![
                "spec",
                "metrics",
                "[]",
                "containerResource",
                "target",
                "averageUtilization",
            ],
        ],
        "Deployment" | "StatefulSet" | "ReplicaSet" => vec![vec!["spec", "replicas"]],
        _ => vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// Decode + default + canonicalise
// ---------------------------------------------------------------------------------------------

/// A body that would not decode into the kind's Go struct (upstream: 400 BadRequest
/// `<Kind> in version "<v>" cannot be handled as a <Kind>: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeErr(pub String);

/// Decodes, defaults and canonicalises `obj` (of `group`/`kind`) as kube-apiserver would
/// before admission. Custom resources are left alone (their schemas preserve unknown fields
/// in tether's CRDs). Built-ins: nulls become absent, empty label/annotation maps are
/// dropped, quantities are canonical, ints must be ints, and per-kind defaults are filled in.
pub fn normalise(group: &str, kind: &str, obj: &mut Value) -> Result<(), DecodeErr> {
    if !is_builtin_group(group) {
        return Ok(());
    }
    let mut problems = Vec::new();
    // Typed decode: a null pointer/slice/map field is re-encoded as absent (`omitempty`).
    drop_nulls(obj);
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
            if m.get(f).is_some_and(|v| {
                v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty)
            }) {
                m.remove(f);
            }
        }
    }
    for pattern in quantity_patterns(kind) {
        visit_mut(obj, &pattern, &mut |v| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    problems.push(format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {other})"));
                    return;
                }
            };
            match canonical_quantity(&text) {
                Some(c) => *v = Value::String(c),
                None => problems.push(format!(
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text:?})"
                )),
            }
        });
    }
    for pattern in int_or_string_patterns(kind) {
        visit_mut(obj, &pattern, &mut |v| match v {
            Value::String(_) => {}
            Value::Number(n) if n.is_i64() => {}
            other => problems.push(format!(
                "json: cannot unmarshal {other} into Go value of type intstr.IntOrString"
            )),
        });
    }
    for pattern in int_patterns(kind) {
        visit_mut(obj, &pattern, &mut |v| {
            if v.as_i64().is_none_or(|n| i32::try_from(n).is_err()) {
                problems.push(format!(
                    "json: cannot unmarshal {v} into Go struct field of type int32"
                ));
            }
        });
    }
    if let Some(p) = problems.into_iter().next() {
        return Err(DecodeErr(p));
    }
    match kind {
        "Namespace" if group.is_empty() => {
            // SetDefaults_Namespace: every namespace is labelled with its name.
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let meta = obj_at(obj, "metadata");
            let labels = ensure_map(meta.entry("labels").or_insert(Value::Null));
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        "HorizontalPodAutoscaler" => default_hpa(obj),
        "Deployment" => default_deployment(obj),
        _ => {}
    }
    Ok(())
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, child| !child.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn obj_at<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let m = ensure_map(v);
    ensure_map(m.entry(key).or_insert(Value::Null))
}

fn ensure_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

/// autoscaling/v2 `SetDefaults_HorizontalPodAutoscaler` (+ behavior defaults).
fn default_hpa(obj: &mut Value) {
    let spec = obj_at(obj, "spec");
    // scaleTargetRef is a non-pointer struct whose kind/name have no omitempty.
    let target = ensure_map(spec.entry("scaleTargetRef").or_insert(Value::Null));
    target.entry("kind").or_insert(json!(""));
    target.entry("name").or_insert(json!(""));
    spec.entry("minReplicas").or_insert(json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(Value::Object(b)) = spec.get_mut("behavior") {
        let up = ensure_map(b.entry("scaleUp").or_insert(Value::Null));
        up.entry("stabilizationWindowSeconds").or_insert(json!(0));
        up.entry("selectPolicy").or_insert(json!("Max"));
        up.entry("policies").or_insert(json!([
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]));
        let down = ensure_map(b.entry("scaleDown").or_insert(Value::Null));
        down.entry("stabilizationWindowSeconds")
            .or_insert(json!(300));
        down.entry("selectPolicy").or_insert(json!("Max"));
        down.entry("policies").or_insert(json!([
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]));
    }
}

/// apps/v1 Deployment defaults (`SetDefaults_Deployment`, pod template basics).
fn default_deployment(obj: &mut Value) {
    let spec = obj_at(obj, "spec");
    spec.entry("replicas").or_insert(json!(1));
    spec.entry("revisionHistoryLimit").or_insert(json!(10));
    spec.entry("progressDeadlineSeconds").or_insert(json!(600));
    let strategy = ensure_map(spec.entry("strategy").or_insert(Value::Null));
    strategy.entry("type").or_insert(json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        let ru = ensure_map(strategy.entry("rollingUpdate").or_insert(Value::Null));
        ru.entry("maxUnavailable").or_insert(json!("25%"));
        ru.entry("maxSurge").or_insert(json!("25%"));
    }
    if let Some(Value::Object(tpl)) = spec.get_mut("template") {
        if let Some(Value::Object(ps)) = tpl.get_mut("spec") {
            ps.entry("restartPolicy").or_insert(json!("Always"));
            ps.entry("terminationGracePeriodSeconds")
                .or_insert(json!(30));
            ps.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
            ps.entry("schedulerName")
                .or_insert(json!("default-scheduler"));
            ps.entry("securityContext").or_insert(json!({}));
            if let Some(Value::Array(cs)) = ps.get_mut("containers") {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.entry("terminationMessagePath")
                        .or_insert(json!("/dev/termination-log"));
                    c.entry("terminationMessagePolicy").or_insert(json!("File"));
                    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                    let tag = image.rsplit('/').next().unwrap_or("");
                    let latest =
                        !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
                    c.entry("imagePullPolicy").or_insert(json!(if latest {
                        "Always"
                    } else {
                        "IfNotPresent"
                    }));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation (422)
// ---------------------------------------------------------------------------------------------

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Problems of a DNS-1123 subdomain (empty when valid).
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_dns1123_label) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// Problems of a DNS-1123 label (empty when valid).
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

fn is_label_like(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems of a label value (`IsValidLabelValue`).
pub fn label_value_errors(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    if v.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_label_like(v, true) {
        out.push(LABEL_VALUE_MSG.to_string());
    }
    out
}

/// Problems of a qualified name such as a label or annotation key (`IsQualifiedName`).
pub fn qualified_name_errors(k: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                dns1123_subdomain_errors(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !is_label_like(name, false) || name.contains('/') {
            out.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    out
}

/// How a kind's names are checked (`ValidateObjectMeta`'s name function).
fn name_errors(group: &str, kind: &str, name: &str) -> Vec<String> {
    match (group, kind) {
        ("", "Namespace") | ("", "Service") => dns1123_label_errors(name),
        ("rbac.authorization.k8s.io", _) => {
            // ValidateRBACName = path segment name.
            let mut out = Vec::new();
            if name == "." || name == ".." {
                out.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    out.push(format!("may not contain '{bad}'"));
                }
            }
            out
        }
        _ => dns1123_subdomain_errors(name),
    }
}

fn label_map_errors(labels: Option<&Value>, field: &str, out: &mut Vec<FieldErr>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        for m in qualified_name_errors(k) {
            out.push(FieldErr::invalid(field, &json!(k), &m));
        }
        match v.as_str() {
            Some(s) => {
                for m in label_value_errors(s) {
                    out.push(FieldErr::invalid(field, v, &m));
                }
            }
            None => out.push(FieldErr::invalid(field, v, "must be a string")),
        }
    }
}

fn validate_percent_or_nonnegative(v: &Value, field: &str, out: &mut Vec<FieldErr>) {
    match v {
        Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                out.push(FieldErr::invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
            } else if digits.parse::<u64>().map_or(true, |n| n > 100) {
                out.push(FieldErr::invalid(field, v, "must not be greater than 100%"));
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => {
            out.push(FieldErr::invalid(
                field,
                v,
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
}

/// Strategy validation of a normalised object about to be stored (upstream runs it after
/// mutating admission and before validating admission). Empty when valid.
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<FieldErr> {
    let mut out = Vec::new();
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        out.push(FieldErr::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in name_errors(group, kind, name) {
            out.push(FieldErr::invalid("metadata.name", &json!(name), &m));
        }
    }
    label_map_errors(
        meta.and_then(|m| m.get("labels")),
        "metadata.labels",
        &mut out,
    );
    if let Some(ann) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0usize;
        for (k, v) in ann {
            total += k.len() + v.as_str().map_or(0, str::len);
            for m in qualified_name_errors(&k.to_ascii_lowercase()) {
                out.push(FieldErr::invalid("metadata.annotations", &json!(k), &m));
            }
        }
        if total > 256 * 1024 {
            out.push(FieldErr {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
    if !is_builtin_group(group) {
        return out;
    }
    for base in pod_spec_paths(kind) {
        if base.len() > 1 {
            let mut tpl = base.to_vec();
            tpl.pop();
            tpl.extend(["metadata", "labels"]);
            visit(obj, &tpl, String::new(), &mut |path, v| {
                label_map_errors(Some(v), path, &mut out)
            });
        }
    }
    match kind {
        "PodDisruptionBudget" => {
            for f in ["minAvailable", "maxUnavailable"] {
                if let Some(v) = obj.pointer(&format!("/spec/{f}")) {
                    validate_percent_or_nonnegative(v, &format!("spec.{f}"), &mut out);
                }
            }
            if obj.pointer("/spec/minAvailable").is_some()
                && obj.pointer("/spec/maxUnavailable").is_some()
            {
                out.push(FieldErr::invalid(
                    "spec",
                    obj.get("spec").unwrap_or(&Value::Null),
                    "minAvailable and maxUnavailable cannot be both set",
                ));
            }
        }
        "HorizontalPodAutoscaler" => {
            for f in ["kind", "name"] {
                let v = obj
                    .pointer(&format!("/spec/scaleTargetRef/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if v.is_empty() {
                    out.push(FieldErr::required(&format!("spec.scaleTargetRef.{f}"), ""));
                }
            }
            let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
            let max = obj.pointer("/spec/maxReplicas").and_then(Value::as_i64);
            match max {
                None => out.push(FieldErr::required("spec.maxReplicas", "")),
                Some(m) if m < 1 => out.push(FieldErr::invalid(
                    "spec.maxReplicas",
                    &json!(m),
                    "must be greater than or equal to 1",
                )),
                Some(m) => {
                    if let Some(n) = min {
                        if n > m {
                            out.push(FieldErr::invalid(
                                "spec.maxReplicas",
                                &json!(m),
                                "must be greater than or equal to `minReplicas`",
                            ));
                        }
                    }
                }
            }
            if min.is_some_and(|n| n < 1) {
                out.push(FieldErr::invalid(
                    "spec.minReplicas",
                    &json!(min),
                    "must be greater than or equal to 1",
                ));
            }
        }
        "Deployment" => {
            if obj.pointer("/spec/selector").is_none() {
                out.push(FieldErr::required("spec.selector", ""));
            }
            for f in ["maxSurge", "maxUnavailable"] {
                if let Some(v) = obj.pointer(&format!("/spec/strategy/rollingUpdate/{f}")) {
                    validate_percent_or_nonnegative(
                        v,
                        &format!("spec.strategy.rollingUpdate.{f}"),
                        &mut out,
                    );
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_take_the_canonical_form() {
        let cases = [
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1500m", "1500m"),
            ("100m", "100m"),
            ("2000", "2k"),
            ("1024", "1024"),
            ("100", "100"),
            ("0", "0"),
            ("0m", "0"),
            ("1k", "1k"),
            ("1000k", "1M"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("512Mi", "512Mi"),
            ("2048Ki", "2Mi"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("0.1m", "100u"),
            ("0.1n", "1n"),
            ("-1000m", "-1"),
            ("+2", "2"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("123Mi", "123Mi"),
            // apimachinery's TestQuantityParseEmit.
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_quantity(input).as_deref(), Some(want), "{input}");
        }
        for bad in ["", "abc", "1Qi", "1..2", "m", "1 m", "1ee"] {
            assert_eq!(canonical_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn built_ins_are_defaulted_and_canonicalised_custom_resources_are_not() {
        let mut hpa = json!({"metadata": {"name": "h", "labels": {}}, "spec": {"scaleTargetRef": null, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        normalise("autoscaling", "HorizontalPodAutoscaler", &mut hpa).unwrap();
        assert_eq!(hpa["metadata"], json!({"name": "h"}));
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            json!({"kind": "", "name": ""})
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageValue"],
            "1Gi"
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
            0
        );

        let mut bare = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 2}});
        normalise("autoscaling", "HorizontalPodAutoscaler", &mut bare).unwrap();
        assert_eq!(
            bare["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert!(bare["spec"].get("behavior").is_none());

        let mut cr = json!({"metadata": {"labels": {}}, "spec": {"x": null, "q": "1000m"}});
        let before = cr.clone();
        normalise("tether.dev", "AttachedResource", &mut cr).unwrap();
        assert_eq!(cr, before);

        let mut bad = json!({"spec": {"maxReplicas": "3"}});
        assert!(normalise("autoscaling", "HorizontalPodAutoscaler", &mut bad).is_err());
        let mut bad = json!({"spec": {"minAvailable": 1.5}});
        assert!(normalise("policy", "PodDisruptionBudget", &mut bad).is_err());
        let mut pdb = json!({"spec": {"minAvailable": "50%"}});
        normalise("policy", "PodDisruptionBudget", &mut pdb).unwrap();
        assert_eq!(pdb["spec"]["minAvailable"], "50%");
    }

    #[test]
    fn labels_names_and_int_or_string_are_validated() {
        let long = "a".repeat(64);
        let obj =
            json!({"metadata": {"name": "Web", "labels": {"ok": "v", "bad": long, "x/y/z": "v"}}});
        let errs = validate("", "ConfigMap", &obj);
        let lines: Vec<String> = errs.iter().map(FieldErr::line).collect();
        assert!(
            lines.iter().any(|l| l.starts_with(
                "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"
            )),
            "{lines:?}"
        );
        assert!(
            lines.contains(&format!(
                "metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"
            )),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("metadata.labels: Invalid value: \"x/y/z\"")),
            "{lines:?}"
        );
        assert_eq!(
            validate(
                "",
                "ConfigMap",
                &json!({"metadata": {"name": "a.b-c", "labels": {"tether.dev/x": "A_b.9"}}})
            ),
            vec![]
        );
        assert_eq!(
            validate(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &json!({"metadata": {"name": "system:auth-delegator"}})
            ),
            vec![]
        );
        assert!(!validate("", "Namespace", &json!({"metadata": {"name": "a.b"}})).is_empty());

        let pdb = |spec: Value| {
            validate(
                "policy",
                "PodDisruptionBudget",
                &json!({"metadata": {"name": "p"}, "spec": spec}),
            )
        };
        assert_eq!(pdb(json!({"minAvailable": "50%"})), vec![]);
        assert_eq!(pdb(json!({"minAvailable": 3})), vec![]);
        assert_eq!(pdb(json!({"minAvailable": "3"}))[0].line(), "spec.minAvailable: Invalid value: \"3\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
        assert_eq!(
            pdb(json!({"maxUnavailable": "150%"}))[0].line(),
            "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
        );
        assert_eq!(
            pdb(json!({"maxUnavailable": -1}))[0].line(),
            "spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"
        );

        let hpa = validate(
            "autoscaling",
            "HorizontalPodAutoscaler",
            &json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "", "name": ""}, "minReplicas": 1, "maxReplicas": 3}}),
        );
        let lines: Vec<String> = hpa.iter().map(FieldErr::line).collect();
        assert_eq!(
            lines,
            [
                "spec.scaleTargetRef.kind: Required value",
                "spec.scaleTargetRef.name: Required value"
            ]
        );
    }
}
