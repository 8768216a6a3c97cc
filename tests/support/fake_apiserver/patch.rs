//! PATCH: merge, JSON and strategic-as-merge patches, and coarse server-side apply (see the
//! module docs of `fake_apiserver.rs` for what ownership means here).

use super::*;

pub(super) fn patch(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    key: &ObjKey,
    status_only: bool,
) -> Outcome {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    let body = ctx.body.clone().unwrap_or(Value::Null);
    let result = match ct {
        "application/apply-patch+yaml" => return apply(st, ctx, def, key, status_only, body),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            match st.objects.get(key) {
                None => Err(ApiError::not_found(def, &key.name)),
                Some(s) => {
                    let mut obj = s.obj.clone();
                    json_patch::merge(&mut obj, &body);
                    Ok(obj)
                }
            }
        }
        "application/json-patch+json" => match st.objects.get(key) {
            None => Err(ApiError::not_found(def, &key.name)),
            Some(s) => match serde_json::from_value::<json_patch::Patch>(body) {
                Err(e) => Err(ApiError::bad_request(&format!("invalid JSON patch: {e}"))),
                Ok(mut p) => {
                    // The apiserver's JSON patch treats a missing path as null in `test`
                    // (kube's finalizer helper tests /metadata/finalizers against null).
                    p.0.retain(|op| match op {
                        json_patch::PatchOperation::Test(t) => {
                            !(t.value.is_null() && s.obj.pointer(t.path.as_str()).is_none())
                        }
                        _ => true,
                    });
                    let mut obj = s.obj.clone();
                    match json_patch::patch(&mut obj, &p) {
                        Ok(()) => Ok(obj),
                        Err(e) => Err(ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}"))),
                    }
                }
            },
        },
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
        )),
    };
    let upd = Update {
        def,
        key,
        status_only,
        mode: ctx.mode(),
        applied: None,
        applied_status: None,
    };
    match result.and_then(|obj| st.update(upd, obj)) {
        Ok(obj) => Outcome::ok(obj),
        Err(e) => e.into(),
    }
}

/// Server-side apply, coarse (see the module docs).
pub(super) fn apply(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    key: &ObjKey,
    status_only: bool,
    cfg: Value,
) -> Outcome {
    let Some(manager) = ctx
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
    else {
        return ApiError::bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        )
        .into();
    };
    if !cfg.is_object() {
        return ApiError::bad_request("the apply configuration must be an object (JSON)").into();
    }
    if let Some(n) = meta_str(&cfg, "name") {
        if n != key.name {
            return ApiError::bad_request(&format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            ))
            .into();
        }
    }
    let force = ctx.flag("force");
    let Some(stored) = st.objects.get(key).cloned() else {
        if status_only {
            return ApiError::not_found(def, &key.name).into();
        }
        let mut obj = cfg.clone();
        let m = meta_mut(&mut obj);
        m.insert("name".into(), Value::String(key.name.clone()));
        m.remove("resourceVersion");
        let ns = def.namespaced.then_some(key.namespace.as_str());
        let applied = BTreeMap::from([(manager, owned_part(&cfg))]);
        return match st.create(def, ns, obj, ctx.mode(), applied) {
            Ok(o) => Outcome::created(o),
            Err(e) => e.into(),
        };
    };
    let mut managers = if status_only {
        stored.applied_status.clone()
    } else {
        stored.applied.clone()
    };
    let mine = owned_part(&cfg);
    let leaves = leaf_paths(&mine);

    // Conflicts: another manager applied a different value for one of my leaves.
    let mut conflicts: Vec<(String, Vec<String>)> = Vec::new();
    for (other, theirs) in managers.iter().filter(|(m, _)| **m != manager) {
        for (path, value) in &leaves {
            if get_path(theirs, path).is_some_and(|v| v != value) {
                conflicts.push((other.clone(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| json!({"type": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": dotted(p)}))
            .collect();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with {m:?}: {}", dotted(p)))
            .collect();
        let mut err = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict(s): {}",
                conflicts.len(),
                list.join(", ")
            ),
        )
        .with_details(def, &key.name);
        if let Some(d) = err.details.as_mut() {
            ensure_object(d).insert("causes".into(), Value::Array(causes));
        }
        return err.into();
    }
    for (other, path) in &conflicts {
        if let Some(theirs) = managers.get_mut(other) {
            remove_path(theirs, path);
        }
    }

    // Fields I applied before, no longer apply, and nobody else applies: removed.
    let mut obj = stored.obj.clone();
    if let Some(previous) = managers.get(&manager) {
        for (path, _) in leaf_paths(previous) {
            let still_mine = get_path(&mine, &path).is_some();
            let others = managers
                .iter()
                .any(|(m, v)| *m != manager && get_path(v, &path).is_some());
            if !still_mine && !others {
                remove_path(&mut obj, &path);
            }
        }
    }
    json_patch::merge(&mut obj, &cfg);
    managers.insert(manager, mine);
    let (applied, applied_status) = if status_only {
        (None, Some(managers))
    } else {
        (Some(managers), None)
    };
    let upd = Update {
        def,
        key,
        status_only,
        mode: ctx.mode(),
        applied,
        applied_status,
    };
    match st.update(upd, obj) {
        Ok(o) => Outcome::ok(o),
        Err(e) => e.into(),
    }
}

/// The part of an apply config that counts for ownership (not identity fields).
pub(super) fn owned_part(cfg: &Value) -> Value {
    let mut v = cfg.clone();
    if let Value::Object(m) = &mut v {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for f in [
                "name",
                "namespace",
                "resourceVersion",
                "uid",
                "managedFields",
            ] {
                meta.remove(f);
            }
        }
    }
    v
}

/// Leaf paths of a JSON object: scalars, lists and empty objects are leaves.
/// Drops from each apply manager's config the leaves whose value `obj` no longer has.
pub(super) fn disown_changed(
    managers: &BTreeMap<String, Value>,
    obj: &Value,
) -> BTreeMap<String, Value> {
    managers
        .iter()
        .map(|(m, cfg)| {
            let mut cfg = cfg.clone();
            for (path, value) in leaf_paths(&cfg.clone()) {
                if get_path(obj, &path) != Some(&value) {
                    remove_path(&mut cfg, &path);
                }
            }
            (m.clone(), cfg)
        })
        .collect()
}

pub(super) fn leaf_paths(v: &Value) -> Vec<(Vec<String>, Value)> {
    pub(super) fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            other if !prefix.is_empty() => out.push((prefix.clone(), other.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

pub(super) fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object()?.get(k))
}

pub(super) fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

pub(super) fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}
