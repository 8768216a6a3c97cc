//! Criterion benches of the admission hot path (issues 7 and 14). Run with
//! `cargo bench --bench admission`; results in bench/RESULTS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether::admission::review::{lean_object, parse};
use tether::admission::{Decision, Webhook};
use tether::naming::{app_domain, attached_name, disambiguated_app_domain, DomainRoot};
use tether::policy::{inject, summarize, validate_spec};

mod common;
use common::*;

fn policy(c: &mut Criterion) {
    let kinds = default_policy().kinds;
    let valid = spec_of(ATTACHED_CREATE);
    let invalid = spec_of(ATTACHED_INVALID);
    assert!(validate_spec(Some(&valid), &kinds).is_empty());
    assert_eq!(validate_spec(Some(&invalid), &kinds).len(), 3);
    let mut g = c.benchmark_group("policy");
    g.bench_function("validate_spec/valid", |b| {
        b.iter(|| validate_spec(Some(black_box(&valid)), &kinds))
    });
    g.bench_function("validate_spec/3_violations", |b| {
        b.iter(|| {
            let v = validate_spec(Some(black_box(&invalid)), &kinds);
            summarize(&v)
        })
    });
    let hpa_json = object_of(HPA_MUTATE);
    let hpa = tether::borrowed_json::Value::from(&hpa_json);
    g.bench_function("inject/labelled_hpa", |b| {
        b.iter(|| {
            inject(
                "autoscaling",
                "HorizontalPodAutoscaler",
                black_box(&hpa),
                "shop",
                None,
            )
        })
    });
    g.bench_function("inject/labelled_hpa+patch_bytes", |b| {
        b.iter(|| {
            let m = inject(
                "autoscaling",
                "HorizontalPodAutoscaler",
                black_box(&hpa),
                "shop",
                None,
            )
            .expect("labelled HPA injects");
            serde_json::to_vec(&m.patch).expect("patch serialises")
        })
    });
    let mut pdb_json = hpa_json.clone();
    pdb_json["spec"] = serde_json::json!({"maxUnavailable": 1});
    let pdb = tether::borrowed_json::Value::from(&pdb_json);
    let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "frontend")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    g.bench_function("inject/labelled_pdb", |b| {
        b.iter(|| {
            inject(
                "policy",
                "PodDisruptionBudget",
                black_box(&pdb),
                "shop",
                Some(&labels),
            )
        })
    });
    g.finish();
}

fn review_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("review");
    for (name, body) in [("2KB", ATTACHED_CREATE), ("200KB", ATTACHED_200K)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                let p = parse(black_box(body.as_bytes())).expect("fixture parses");
                assert!(p.request.is_ok());
                p
            })
        });
        // What the server budgets before parsing: the byte-count bound it uses, and the exact
        // count it falls back to when the bound does not fit.
        g.bench_function(format!("budget/values_bound/{name}"), |b| {
            b.iter(|| tether::budget::json_values_bound(black_box(body.as_bytes())))
        });
        g.bench_function(format!("budget/json_cost/{name}"), |b| {
            b.iter(|| tether::budget::json_cost(black_box(body.as_bytes())))
        });
        // The object alone: what the one-pass parse leaves out (managedFields, unread
        // annotations) and borrows, against building all of it borrowed, and all of it as a
        // `serde_json::Value`, as before issue 14.
        let object = serde_json::from_str::<serde_json::Value>(body).expect("fixture is JSON")
            ["request"]["object"]
            .to_string();
        g.bench_function(format!("object/lean/{name}"), |b| {
            b.iter(|| {
                let mut de = serde_json::Deserializer::from_slice(black_box(object.as_bytes()));
                lean_object(&mut de).expect("object parses")
            })
        });
        g.bench_function(format!("object/full_borrowed/{name}"), |b| {
            b.iter(|| {
                serde_json::from_slice::<tether::borrowed_json::Value<'_>>(black_box(
                    object.as_bytes(),
                ))
                .expect("object parses")
            })
        });
        g.bench_function(format!("object/full_value/{name}"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(black_box(object.as_bytes()))
                    .expect("object parses")
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let hpa = tether::borrowed_json::Value::from(object_of(HPA_MUTATE));
    let m = inject("autoscaling", "HorizontalPodAutoscaler", &hpa, "shop", None)
        .expect("labelled HPA injects");
    let warning = "tether runs standalone (no cluster): kinds resolve from a built-in table and access reviews are NOT evaluated (all allowed); pass --rbac-file to evaluate them";
    // As `Admission::review` writes every answer: from the decision's borrowed parts.
    g.bench_function("serialise_response/allowed", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(512);
            Decision::allow("allowed")
                .write_review(
                    "b1f5e7a2-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
                    Some(warning),
                    &mut out,
                )
                .expect("serialises");
            out
        })
    });
    g.bench_function("serialise_response/patch", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(512);
            Decision::allow("injected")
                .with_patch(m.patch.clone())
                .with_warnings(m.warnings.clone())
                .write_review(
                    "c2a6f8b3-2d4e-4f60-9bac-1d2e3f4a5b6c",
                    Some(warning),
                    &mut out,
                )
                .expect("serialises");
            out
        })
    });
    // The owned response first (what `into_response` gives other callers), then written.
    g.bench_function("serialise_response/allowed_owned", |b| {
        b.iter(|| {
            let r = Decision::allow("allowed").into_response(
                "b1f5e7a2-1c3d-4e5f-8a9b-0c1d2e3f4a5b".to_string(),
                Some(warning),
            );
            let mut out = Vec::with_capacity(512);
            r.write_review(&mut out).expect("serialises");
            out
        })
    });
    g.finish();
}

fn full_review(c: &mut Criterion) {
    let rt = runtime();
    let adm = offline_admission();
    check_fixtures(&rt, &adm);
    let mut g = c.benchmark_group("Admission::review");
    let cases = [
        (
            "validate/attached_valid",
            Webhook::Validate,
            ATTACHED_CREATE,
        ),
        (
            "validate/attached_3_violations",
            Webhook::Validate,
            ATTACHED_INVALID,
        ),
        ("validate/attached_200KB", Webhook::Validate, ATTACHED_200K),
        ("mutate/attached_label", Webhook::Mutate, ATTACHED_CREATE),
        ("mutate/labelled_hpa", Webhook::Mutate, HPA_MUTATE),
        ("mutate/appdomain", Webhook::Mutate, APPDOMAIN_MUTATE),
    ];
    for (name, webhook, body) in cases {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let a = adm
                            .review(webhook, black_box(body.as_bytes()), BUDGET)
                            .await
                            .expect("valid review");
                        black_box(a);
                    }
                    start.elapsed()
                })
            })
        });
    }
    // Cluster mode: the six access reviews go through the cache, here warm, so all hit.
    let cached = cached_sar_admission();
    let warm = rt
        .block_on(cached.review(Webhook::Validate, ATTACHED_CREATE.as_bytes(), BUDGET))
        .expect("valid review");
    assert!(warm.allowed, "attached-create is allowed");
    g.bench_function("validate/attached_valid_warm_sar_cache", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let a = cached
                        .review(
                            Webhook::Validate,
                            black_box(ATTACHED_CREATE.as_bytes()),
                            BUDGET,
                        )
                        .await
                        .expect("valid review");
                    black_box(a);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn naming(c: &mut Criterion) {
    let root = DomainRoot::parse("apps.example.com").expect("valid root");
    let mut g = c.benchmark_group("naming");
    g.bench_function("attached_name", |b| {
        b.iter(|| {
            attached_name(
                black_box("payments-worker-v2"),
                black_box("worker-hpa"),
                "payments-worker",
                "v2",
            )
        })
    });
    g.bench_function("attached_name/long", |b| {
        b.iter(|| {
            attached_name(
                black_box("checkout-frontend-canary-blue-green-east"),
                black_box("hpa"),
                "checkout",
                "v1",
            )
        })
    });
    g.bench_function("app_domain/uuid", |b| {
        b.iter(|| {
            app_domain(
                black_box("{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}"),
                black_box("invoicing-pro"),
                &root,
            )
        })
    });
    g.bench_function("app_domain/disambiguated", |b| {
        b.iter(|| {
            disambiguated_app_domain(
                black_box("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c"),
                black_box("Invoicing Pro"),
                &root,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, policy, review_codec, full_review, naming);
criterion_main!(benches);
