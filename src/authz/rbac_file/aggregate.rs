//! Aggregated ClusterRoles: label selectors and the rules they collect.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::load::{Loader, ObjCtx, RoleKind};
use super::*;

/// Most rules all aggregated ClusterRoles may hold together (each selected rule counted
/// once per role that aggregates it): a bound on the work and memory of aggregation.
pub const MAX_AGGREGATED_RULES: usize = 1_000_000;

/// One `matchExpressions` requirement.
#[derive(Debug, Clone)]
pub(super) enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A compiled label selector (aggregation rules).
#[derive(Debug, Clone)]
pub(super) struct Selector {
    pub(super) match_labels: Vec<(String, String)>,
    pub(super) requirements: Vec<Requirement>,
}

impl Selector {
    /// Kubernetes label selector semantics; the empty selector matches everything.
    pub(super) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
                Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

pub(super) fn compile_selectors(
    ctx: &ObjCtx<'_>,
    selectors: &[LabelSelector],
) -> Result<Vec<Selector>, RbacFileError> {
    let mut out = Vec::new();
    for (i, sel) in selectors.iter().enumerate() {
        let mut requirements = Vec::new();
        for (j, e) in sel
            .match_expressions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let field = |f: &str| {
                format!("aggregationRule.clusterRoleSelectors[{i}].matchExpressions[{j}].{f}")
            };
            let values = e.values.clone().unwrap_or_default();
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(ctx.err(
                        field("values"),
                        format!("must be non-empty for operator {}", e.operator),
                    ))
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(ctx.err(
                        field("values"),
                        format!("must be empty for operator {}", e.operator),
                    ))
                }
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err(ctx.err(
                        field("operator"),
                        format!("unsupported {other:?}; use In, NotIn, Exists or DoesNotExist"),
                    ))
                }
            };
            requirements.push(req);
        }
        out.push(Selector {
            match_labels: sel
                .match_labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            requirements,
        });
    }
    Ok(out)
}

impl Loader {
    /// Effective rules per role index: own rules, or for aggregated ClusterRoles the union of
    /// the rules of every other ClusterRole their selectors match, transitively (an
    /// aggregated role may select another aggregated role), as the aggregation controller
    /// reaches in steady state.
    ///
    /// Linear in the file plus the result (issue 13: the earlier fixed-point loop with
    /// `Vec::contains` was quadratic, 580 KB took over a minute): rules are interned, each
    /// selector finds its candidates through a label index, and new rules flow along the
    /// "selected by" edges from a work list, each (role, rule) pair once.
    pub(super) fn aggregate(&mut self) -> Result<Vec<Vec<Rule>>, RbacFileError> {
        // Intern rules: equal rules share an id, so sets compare ids, not vectors of strings.
        let mut ids: HashMap<&Rule, usize> = HashMap::new();
        let mut table: Vec<&Rule> = Vec::new();
        let mut own: Vec<Vec<usize>> = Vec::with_capacity(self.roles.len());
        for r in &self.roles {
            own.push(
                r.rules
                    .iter()
                    .map(|rule| {
                        *ids.entry(rule).or_insert_with(|| {
                            table.push(rule);
                            table.len() - 1
                        })
                    })
                    .collect(),
            );
        }
        let cluster_roles: Vec<usize> = (0..self.roles.len())
            .filter(|&i| self.roles[i].kind == RoleKind::ClusterRole)
            .collect();
        // (label key, value) → ClusterRoles carrying it.
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for &m in &cluster_roles {
            for (k, v) in &self.roles[m].labels {
                by_label.entry((k, v)).or_default().push(m);
            }
        }
        // selected_by[m]: the aggregated roles whose selectors match m.
        let mut selected_by: Vec<Vec<usize>> = vec![Vec::new(); self.roles.len()];
        let mut selected_any = vec![false; self.roles.len()];
        let mut stamp = vec![usize::MAX; self.roles.len()];
        for &a in &cluster_roles {
            let Some(selectors) = self.roles[a].aggregation.as_ref() else {
                continue;
            };
            for sel in selectors {
                // A selector with matchLabels only looks at roles carrying its first label.
                let candidates: &[usize] = match sel.match_labels.first() {
                    Some((k, v)) => by_label
                        .get(&(k.as_str(), v.as_str()))
                        .map_or(&[][..], Vec::as_slice),
                    None => &cluster_roles,
                };
                for &m in candidates {
                    if m == a || stamp[m] == a || !sel.matches(&self.roles[m].labels) {
                        continue;
                    }
                    stamp[m] = a;
                    selected_by[m].push(a);
                    selected_any[a] = true;
                }
            }
        }
        // Propagate: every rule a role has flows to the aggregated roles selecting it.
        let aggregated: Vec<bool> = self.roles.iter().map(|r| r.aggregation.is_some()).collect();
        let mut sets: Vec<Vec<usize>> = own
            .iter()
            .enumerate()
            .map(|(i, o)| if aggregated[i] { Vec::new() } else { o.clone() })
            .collect();
        let mut seen: Vec<HashSet<usize>> = vec![HashSet::new(); self.roles.len()];
        let mut work: Vec<(usize, usize)> = Vec::new();
        for &m in &cluster_roles {
            if !aggregated[m] {
                work.extend(sets[m].iter().map(|&r| (m, r)));
            }
        }
        let mut total = 0usize;
        while let Some((m, r)) = work.pop() {
            for &a in &selected_by[m] {
                if seen[a].insert(r) {
                    total += 1;
                    if total > MAX_AGGREGATED_RULES {
                        return Err(RbacFileError::TooLarge {
                            what: format!(
                                "role aggregation gives more than {MAX_AGGREGATED_RULES} rules in all"
                            ),
                        });
                    }
                    sets[a].push(r);
                    work.push((a, r));
                }
            }
        }
        for &a in &cluster_roles {
            if !aggregated[a] {
                continue;
            }
            let role = &self.roles[a];
            if !selected_any[a] {
                self.warnings.push(format!(
                    "ClusterRole/{} has an aggregationRule that selects no ClusterRole in the \
                     RBAC file; it grants nothing",
                    role.name
                ));
            }
            let dropped = own[a].iter().filter(|r| !seen[a].contains(r)).count();
            if dropped > 0 {
                self.warnings.push(format!(
                    "ClusterRole/{} has an aggregationRule, so its rules are replaced by those of \
                     the ClusterRoles it selects (as the aggregation controller does); {dropped} \
                     rule(s) written in it are ignored",
                    role.name
                ));
            }
        }
        Ok(sets
            .into_iter()
            .map(|set| set.into_iter().map(|r| table[r].clone()).collect())
            .collect())
    }
}
