//! The Knative DomainMapping part: the desired mapping, whether the live one already is it,
//! the server-side apply, and the condition read back from it.

use super::*;

/// The DomainMapping tether wants for this AppDomain.
pub(super) fn desired_mapping(
    obj: &AppDomain,
    domain: &str,
    ns: &str,
    name: &str,
    svc: &str,
) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {
            "name": domain,
            "namespace": ns,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                APPDOMAIN_LABEL: appdomain_label_value(ns, name),
            },
            "ownerReferences": [{
                "apiVersion": "tether.dev/v1alpha1",
                "kind": "AppDomain",
                "name": name,
                "uid": obj.meta().uid.clone().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "ref": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": svc,
            },
        },
    })
}

/// Whether the existing mapping already has every field tether applies (Knative may default
/// `spec.ref.namespace` to the mapping's namespace; that counts as equal).
pub(super) fn mapping_up_to_date(
    existing: &DynamicObject,
    uid: &str,
    ns: &str,
    name: &str,
    svc: &str,
) -> bool {
    let labels = existing.labels();
    let labels_ok = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(APPDOMAIN_LABEL) == Some(&appdomain_label_value(ns, name));
    let owner_ok = existing
        .owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "AppDomain");
    let r = existing.data.get("spec").and_then(|s| s.get("ref"));
    let field = |k: &str| r.and_then(|r| r.get(k)).and_then(Value::as_str);
    let ns_ok = matches!(field("namespace"), None | Some("")) || field("namespace") == Some(ns);
    let ref_ok = field("apiVersion") == Some("serving.knative.dev/v1")
        && field("kind") == Some("Service")
        && field("name") == Some(svc)
        && ns_ok;
    labels_ok && owner_ok && ref_ok
}

pub(super) async fn ensure_mapping(
    obj: &AppDomain,
    domain: &str,
    ns: &str,
    name: &str,
    svc: &str,
    ctx: &Context,
) -> Result<(Condition, String), Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &domain_mapping_resource());
    let uid = obj
        .meta()
        .uid
        .clone()
        .ok_or(Error::MissingMetadata("uid"))?;
    let existing = api
        .get_opt(domain)
        .await
        .map_err(kube_err(format!("getting DomainMapping {ns}/{domain}")))?;

    if let Some(dm) = &existing {
        if let Some(other) = dm
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.uid != uid)
        {
            let cond = cond(
                DOMAIN_MAPPING_READY,
                "False",
                reasons::DOMAIN_MAPPING_CONFLICT,
                format!(
                    "DomainMapping {ns}/{domain} is controlled by {} {:?}, not by this AppDomain; tether leaves it alone. Delete it (or that owner) to let tether manage the mapping",
                    other.kind, other.name
                ),
            );
            return Ok((cond, String::new()));
        }
    }

    let mapping = match existing {
        Some(dm) if mapping_up_to_date(&dm, &uid, ns, name, svc) => dm,
        _ => {
            let body = desired_mapping(obj, domain, ns, name, svc);
            let pp = PatchParams::apply(&field_manager(ns, name)).force();
            let applied = api
                .patch(domain, &pp, &Patch::Apply(&body))
                .await
                .map_err(kube_err(format!(
                    "applying DomainMapping {ns}/{domain} (server-side apply)"
                )))?;
            tracing::info!(
                controller = NAME,
                namespace = ns,
                domain,
                "applied DomainMapping"
            );
            applied
        }
    };
    Ok(mapping_condition(&mapping, ns, domain))
}

/// `DomainMappingReady` and the URL, copied from the mapping's status.
pub(super) fn mapping_condition(dm: &DynamicObject, ns: &str, domain: &str) -> (Condition, String) {
    let status = dm.data.get("status");
    let url = status
        .and_then(|s| s.get("url"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ready = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let cond = match ready {
        None => cond(
            DOMAIN_MAPPING_READY,
            "Unknown",
            reasons::DOMAIN_MAPPING_PENDING,
            format!("DomainMapping {ns}/{domain} has no Ready condition yet; Knative has not reconciled it (is Knative Serving running?)"),
        ),
        Some(c) => {
            let status = match s(c, "status").as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            };
            let reason = match (s(c, "reason"), status) {
                (r, _) if !r.is_empty() => r,
                (_, "True") => reasons::DOMAIN_MAPPING_READY.to_string(),
                _ => reasons::DOMAIN_MAPPING_NOT_READY.to_string(),
            };
            let message = match s(c, "message") {
                m if !m.is_empty() => format!("DomainMapping {ns}/{domain}: {m}"),
                _ if status == "True" => format!("DomainMapping {ns}/{domain} is Ready"),
                _ => format!("DomainMapping {ns}/{domain} is not Ready yet (Ready={status})"),
            };
            self::cond(DOMAIN_MAPPING_READY, status, &reason, message)
        }
    };
    (cond, url)
}
