//! Golden values for every name, hash and domain tether computes, through the public API.
//!
//! Each expected value is a literal, computed outside this code base and recorded with the
//! exact command used, so a change to any hash input, cut length or sanitising rule fails
//! here. The hashes come from coreutils:
//!
//! ```text
//! h() { printf '%s' "$1" | sha256sum | cut -c1-$2; }
//! ```
//!
//! The readable prefixes were derived by hand from the rules quoted on each test.

use rstest::rstest;
use serde_json::{json, Value};
use tether::controller::attached::content_hash;
use tether::controller::domains::appdomain_label_value;
use tether::naming::{
    app_domain, attached_name, disambiguated_app_domain, disambiguator, domain_part, label_value,
    normalize_id, DomainRoot, PartKind,
};

const ROOT: &str = "apps.example.com";

fn root() -> DomainRoot {
    DomainRoot::parse(ROOT).expect("a valid root")
}

/// Copy names: `{prefix}-{h8}`, `h8` = `h "{workload}/{attachedResource}/{version}" 8`;
/// prefix = `"{deployment}-{attachedResource}"` lowercased, runs outside `[a-z0-9-]` -> `-`,
/// leading `-` removed, cut to 38, trailing `-` removed.
#[rstest]
// h 'worker/hpa/v1' 8 -> 243004dd
#[case("worker-v1", "hpa", "worker", "v1", "worker-v1-hpa-243004dd")]
// h 'worker/hpa/v2' 8 -> 97f3b47f
#[case("worker-v2", "hpa", "worker", "v2", "worker-v2-hpa-97f3b47f")]
// h 'worker/worker-hpa/v1' 8 -> 059daf4a
#[case(
    "worker-v1",
    "worker-hpa",
    "worker",
    "v1",
    "worker-v1-worker-hpa-059daf4a"
)]
// h 'worker/pdb/v1' 8 -> 420b31d8
#[case("worker-v1", "pdb", "worker", "v1", "worker-v1-pdb-420b31d8")]
// h 'web/web-pdb/v2' 8 -> be570e86
#[case("web-v2", "web-pdb", "web", "v2", "web-v2-web-pdb-be570e86")]
// h 'payments-worker/worker-hpa/v2' 8 -> 40a40f25
#[case(
    "payments-worker-v2",
    "worker-hpa",
    "payments-worker",
    "v2",
    "payments-worker-v2-worker-hpa-40a40f25"
)]
// The prefix cut to 38 characters; h 'checkout/hpa/v1' 8 -> 6a9b60a5
#[case(
    "checkout-frontend-canary-blue-green-east",
    "hpa",
    "checkout",
    "v1",
    "checkout-frontend-canary-blue-green-ea-6a9b60a5"
)]
// Inputs the API server never sends (object names are lowercase DNS labels); they show the
// sanitising. h 'web/hpa/v2' 8 -> e7d1cb65
#[case("Web_V2.canary", "hpa", "web", "v2", "web-v2-canary-hpa-e7d1cb65")]
// Never sent either: empty names leave no prefix, only the hash. h 'w//v' 8 -> 50acd45c
#[case("", "", "w", "v", "50acd45c")]
fn copy_names_are_golden(
    #[case] deployment: &str,
    #[case] attached_resource: &str,
    #[case] workload: &str,
    #[case] version: &str,
    #[case] want: &str,
) {
    assert_eq!(
        attached_name(deployment, attached_resource, workload, version),
        want
    );
}

/// Label values: kept when valid; otherwise `{prefix}-{h8}` with `h8` = `h "$s" 8` and
/// prefix = `s` with each character outside `[A-Za-z0-9._-]` -> `-`, cut to 54, trimmed of
/// non-alphanumerics at both ends.
#[rstest]
#[case::valid_kept("payments-worker-v2", "payments-worker-v2")]
#[case::empty_is_a_valid_label_value("", "")]
#[case::sixty_three_fit(&"a".repeat(63), &"a".repeat(63))]
// h "$(printf 'a%.0s' $(seq 64))" 8 -> ffe054fe
#[case::sixty_four_cut(&"a".repeat(64), &format!("{}-ffe054fe", "a".repeat(54)))]
// h 'team/payments worker' 8 -> 8d5c0bf3
#[case::slash_and_space("team/payments worker", "team-payments-worker-8d5c0bf3")]
// h '///' 8 -> 732c4e97 (nothing readable is left)
#[case::nothing_readable("///", "732c4e97")]
// UTF-8 bytes hashed: h 'Über-release' 8 -> 6154e0e5
#[case::non_ascii("Über-release", "ber-release-6154e0e5")]
// h "$name" 8 -> eec0debe, name = the 83-character Deployment name
#[case::long_deployment_name(
    "payments-worker-release-2026-11-30-build-4f1c2a9e-canary-blue-green-east-1.internal",
    "payments-worker-release-2026-11-30-build-4f1c2a9e-cana-eec0debe"
)]
fn label_values_are_golden(#[case] input: &str, #[case] want: &str) {
    assert_eq!(label_value(input), want);
}

/// The AppDomain label value: `{ns}.{name}` when a valid label value, else
/// `h "{ns}/{name}" 32`.
#[rstest]
#[case::plain("ns", "app", "ns.app")]
#[case::sixty_three_fit("ns", &"a".repeat(60), &format!("ns.{}", "a".repeat(60)))]
// h "ns/$(printf 'a%.0s' $(seq 61))" 32
#[case::hashed("ns", &"a".repeat(61), "77a61124e02c46f189ed1fe351dfe028")]
// h "ns/$(printf 'b%.0s' $(seq 61))" 32
#[case::hashed_other("ns", &"b".repeat(61), "21907f5695468ca0265405e0fafbe854")]
// h "payments/$(printf 'x%.0s' $(seq 60))" 32
#[case::hashed_long_namespace("payments", &"x".repeat(60), "87750f38ec0d58921006757e948cdba3")]
fn appdomain_label_values_are_golden(
    #[case] namespace: &str,
    #[case] name: &str,
    #[case] want: &str,
) {
    assert_eq!(appdomain_label_value(namespace, name), want);
}

/// Plain app domains `{t}--{e}.{root}`: a UUID gives its first 8 hex characters, other ids
/// their 12-character slug, slugs under 3 characters `h "$normalised_id" 8`.
#[rstest]
#[case::uuid_and_slug(
    "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
    "invoicing-pro",
    "3f2a9c1e--invoicing-pr.apps.example.com"
)]
#[case::braced_upper_uuid_and_spaces(
    " {3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C} ",
    "Invoicing Pro Suite",
    "3f2a9c1e--invoicing-pr.apps.example.com"
)]
#[case::urn_and_simple_uuid(
    "urn:uuid:018f3a2b-7c4d-7e0a-9c55-1d2e3f4a5b6c",
    "3F2A9C1E7B4D4E0A9C551D2E3F4A5B6C",
    "018f3a2b--3f2a9c1e.apps.example.com"
)]
#[case::uppercase("ACME", "CRM", "acme--crm.apps.example.com")]
// h 'xn' 8 -> ce482786
#[case::short_slug_hashed("xn", "crm", "ce482786--crm.apps.example.com")]
// Never sent (the validating webhook denies empty ids); h '' 8 -> e3b0c442
#[case::empty_id_hashed("", "a b", "e3b0c442--a-b.apps.example.com")]
fn app_domains_are_golden(#[case] tenant: &str, #[case] extension: &str, #[case] want: &str) {
    assert_eq!(app_domain(tenant, extension, &root()), want);
}

/// Disambiguated domains `{t}--{e}-{h6}.{root}`, `h6` = `h "{len t}:{t}{len e}:{e}" 6` over
/// the normalised ids (lengths in bytes).
#[rstest]
// h '4:acme3:crm' 6 -> 16e0dd
#[case("ACME", "CRM", "16e0dd", "acme--crm-16e0dd.apps.example.com")]
// h '36:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c13:invoicing-pro' 6 -> 898347
#[case(
    "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
    "invoicing-pro",
    "898347",
    "3f2a9c1e--invoicing-pr-898347.apps.example.com"
)]
// Same UUID braced and uppercase; the extension normalises to "invoicing pro":
// h '36:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c13:invoicing pro' 6 -> eed5f5
#[case(
    "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
    "Invoicing Pro",
    "eed5f5",
    "3f2a9c1e--invoicing-pr-eed5f5.apps.example.com"
)]
// h '36:018f3a2b-9999-7e0a-9c55-aaaaaaaaaaaa13:invoicing-pro' 6 -> 7a6f00
#[case(
    "018f3a2b-9999-7e0a-9c55-aaaaaaaaaaaa",
    "invoicing-pro",
    "7a6f00",
    "018f3a2b--invoicing-pr-7a6f00.apps.example.com"
)]
// h 'xn' 8 -> ce482786; h '2:xn3:crm' 6 -> ded9f5
#[case("xn", "crm", "ded9f5", "ce482786--crm-ded9f5.apps.example.com")]
fn disambiguated_domains_are_golden(
    #[case] tenant: &str,
    #[case] extension: &str,
    #[case] h6: &str,
    #[case] want: &str,
) {
    assert_eq!(disambiguator(tenant, extension), h6);
    assert_eq!(disambiguated_app_domain(tenant, extension, &root()), want);
}

/// How each part was derived (what `tether domain -v` explains).
#[rstest]
#[case::uuid("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", "3f2a9c1e", PartKind::Uuid)]
#[case::slug("Invoicing Pro Suite", "invoicing-pr", PartKind::Slug)]
// h 'ab' 8 -> fb8e20fc
#[case::hash_fallback("AB", "fb8e20fc", PartKind::HashFallback { slug: "ab".into() })]
// h 'é' 8 -> 4a99557e (UTF-8 bytes c3 a9): non-ASCII leaves an empty slug
#[case::non_ascii("é", "4a99557e", PartKind::HashFallback { slug: String::new() })]
fn domain_parts_are_golden(#[case] id: &str, #[case] part: &str, #[case] kind: PartKind) {
    let p = domain_part(id);
    assert_eq!((p.part.as_str(), p.kind), (part, kind));
}

#[rstest]
#[case(
    " {3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C} ",
    "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c"
)]
#[case(
    "URN:UUID:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
    "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c"
)]
#[case(
    "3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c",
    "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c"
)]
#[case("  Invoicing Pro ", "invoicing pro")]
fn normalised_ids_are_golden(#[case] id: &str, #[case] want: &str) {
    assert_eq!(normalize_id(id), want);
}

/// The applied hash (`tether.dev/applied-hash`): SHA-256 of the canonical JSON (keys sorted,
/// no whitespace, integral floats as integers), full 64 hex characters:
/// `printf '%s' "$canonical" | sha256sum`, with `$canonical` written out by hand in each
/// case. Key order and `2.0` in the input must not change it (the API server reorders keys
/// and decodes `2.0` as 2).
#[rstest]
// printf '%s' '{"a":{"x":"s","y":[1,{"p":1,"q":2}]},"b":2}' | sha256sum
#[case::keys_shuffled_and_float(
    json!({"b": 2.0, "a": {"y": [1, {"q": 2, "p": 1}], "x": "s"}}),
    "32b9c84908dfbd253fa5580f73f690209a6119e8d284f4b6db4e73178a4a01de"
)]
#[case::keys_sorted(
    json!({"a": {"x": "s", "y": [1, {"p": 1, "q": 2}]}, "b": 2}),
    "32b9c84908dfbd253fa5580f73f690209a6119e8d284f4b6db4e73178a4a01de"
)]
// printf '%s' '{"a":{"x":"s","y":[1,{"p":1,"q":2}]},"b":1}' | sha256sum
#[case::one_value_changed(
    json!({"a": {"x": "s", "y": [1, {"p": 1, "q": 2}]}, "b": 1}),
    "815633b15dcd39daa8f323cf359ab245cfaa8df80071995d54e0d64213765fbe"
)]
// printf '%s' '{"note":"Grüße","ratio":2.5}' | sha256sum   (non-ASCII written as UTF-8)
#[case::utf8_and_fraction(
    json!({"ratio": 2.5, "note": "Grüße"}),
    "4ab07e2bb5e668d22915a74cb6f46127952d2eae17be4d8642f8f92e8afeccc5"
)]
// printf '%s' '{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"labels":{"app":"worker"},"name":"worker-v1-hpa-243004dd","namespace":"payments"},"spec":{"maxReplicas":5,"minReplicas":2,"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"worker-v1"}}}' | sha256sum
#[case::rendered_hpa(
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "worker-v1-hpa-243004dd", "namespace": "payments", "labels": {"app": "worker"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker-v1"},
            "minReplicas": 2,
            "maxReplicas": 5.0
        }
    }),
    "09942bb7819d3be18a21cab5bb0552af082b246a0fe8e2c9d178877fb7ce5585"
)]
fn applied_hashes_are_golden(#[case] rendered: Value, #[case] want: &str) {
    assert_eq!(content_hash(&rendered), want);
}
