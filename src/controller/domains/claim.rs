//! The Knative ClusterDomainClaim part: the manifest tether creates, whether an existing
//! claim gives the domain to this namespace, and creating it when allowed.

use super::*;

/// The ClusterDomainClaim that gives `domain` to `namespace`, as a cluster administrator
/// would apply it (no tether labels: a claim made by hand is the administrator's, and tether
/// never deletes it).
pub fn claim_manifest(domain: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "networking.internal.knative.dev/v1alpha1",
        "kind": "ClusterDomainClaim",
        "metadata": {"name": domain},
        "spec": {"namespace": namespace},
    })
}

pub(super) fn claim_namespace(claim: &DynamicObject) -> String {
    claim
        .data
        .get("spec")
        .and_then(|s| s.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

pub(super) fn is_tethers(claim: &DynamicObject) -> bool {
    claim.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// The `DomainClaimed` condition for a claim that exists.
pub(super) fn judge_claim(claim: &DynamicObject, domain: &str, ns: &str) -> Condition {
    let holder = claim_namespace(claim);
    if holder == ns {
        let by = if is_tethers(claim) {
            " (created by tether)"
        } else {
            ""
        };
        cond(
            DOMAIN_CLAIMED,
            "True",
            reasons::DOMAIN_CLAIMED,
            format!("ClusterDomainClaim {domain} assigns the domain to namespace {ns}{by}"),
        )
    } else {
        let held = if holder.is_empty() {
            "names no namespace (spec.namespace is empty)".to_string()
        } else {
            format!("assigns the domain to namespace {holder:?}")
        };
        cond(
            DOMAIN_CLAIMED,
            "False",
            reasons::DOMAIN_ALREADY_CLAIMED,
            format!(
                "ClusterDomainClaim {domain} {held}, not to {ns:?}, so Knative will not serve a DomainMapping for it here; if that claim is stale, a cluster administrator can delete it (kubectl delete clusterdomainclaim {domain}) and tether will claim the domain for this namespace"
            ),
        )
    }
}

pub(super) async fn ensure_claim(
    domain: &str,
    ns: &str,
    name: &str,
    ctx: &Context,
) -> Result<Condition, Error> {
    let api: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &cluster_domain_claim_resource());
    let get_action = || format!("getting ClusterDomainClaim {domain}");
    if let Some(claim) = api.get_opt(domain).await.map_err(kube_err(get_action()))? {
        return Ok(judge_claim(&claim, domain, ns));
    }
    if !ctx.settings.auto_create_domain_claims {
        let manifest = serde_yaml_ng::to_string(&claim_manifest(domain, ns))
            .unwrap_or_else(|e| format!("# could not render the manifest: {e}\n"));
        return Ok(cond(
            DOMAIN_CLAIMED,
            "False",
            reasons::DOMAIN_CLAIM_MISSING,
            format!(
                "ClusterDomainClaim {domain} does not exist, and tether creates claims only with --auto-create-domain-claims (env KNATIVE_AUTO_CREATE_CDC). Knative serves a DomainMapping only for a domain claimed for its namespace: a cluster administrator can claim it with `kubectl apply -f -` and this manifest:\n{manifest}"
            ),
        ));
    }
    let mut labels = BTreeMap::new();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    labels.insert(APPDOMAIN_LABEL.to_string(), appdomain_label_value(ns, name));
    let mut claim = DynamicObject::new(domain, &cluster_domain_claim_resource())
        .data(json!({"spec": {"namespace": ns}}));
    claim.metadata.labels = Some(labels);
    match api.create(&PostParams::default(), &claim).await {
        Ok(created) => {
            tracing::info!(
                controller = NAME,
                domain,
                namespace = ns,
                "created ClusterDomainClaim"
            );
            Ok(judge_claim(&created, domain, ns))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Someone (another replica, an administrator) created it in between.
            match api.get_opt(domain).await.map_err(kube_err(get_action()))? {
                Some(claim) => Ok(judge_claim(&claim, domain, ns)),
                None => Err(Error::Kube {
                    action: format!("creating ClusterDomainClaim {domain}"),
                    source: kube::Error::Api(s),
                }),
            }
        }
        Err(e) => Err(Error::Kube {
            action: format!("creating ClusterDomainClaim {domain}"),
            source: e,
        }),
    }
}
