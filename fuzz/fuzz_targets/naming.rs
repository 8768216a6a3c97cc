//! (d) Name and domain computation (`tether::naming`), with the invariants the SPEC (§4) and
//! the module docs promise asserted on arbitrary ids and roots.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tether::naming::{
    app_domain, attached_name, check_domain, disambiguated_app_domain, disambiguator, domain_part,
    is_computed_domain, is_dns1123_label, is_dns1123_subdomain, normalize_id, DomainRoot,
    MAX_ATTACHED_NAME_LEN, MAX_DNS1123_LABEL_LEN, MAX_DNS1123_SUBDOMAIN_LEN, MAX_DOMAIN_ROOT_LEN,
};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    deployment: &'a str,
    attached_resource: &'a str,
    workload: &'a str,
    version: &'a str,
    tenant: &'a str,
    extension: &'a str,
    /// Arbitrary root text; when it does not parse, a valid root is used instead so the
    /// domain functions still run.
    root: &'a str,
    /// Length of a generated valid root, near MAX_DOMAIN_ROOT_LEN.
    root_len: u8,
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A valid root of about `len` characters (at most one less): labels of up to 63 `a`
/// followed by `c`.
fn long_root(len: usize) -> String {
    let len = len.clamp(4, MAX_DOMAIN_ROOT_LEN);
    let mut labels = Vec::new();
    let mut remaining = len - 1; // the final "c"
    while remaining >= 2 {
        let take = remaining.min(64); // a label and its dot
        labels.push("a".repeat(take - 1));
        remaining -= take;
    }
    labels.push("c".to_string());
    labels.join(".")
}

fuzz_target!(|input: Input<'_>| {
    // Attached copy names: a DNS-1123 label of at most 47 characters ending in an 8-hex hash
    // that depends only on (workload, attachedResource, version).
    let name = attached_name(
        input.deployment,
        input.attached_resource,
        input.workload,
        input.version,
    );
    assert!(is_dns1123_label(&name), "{name:?} is not a DNS-1123 label");
    assert!(name.len() <= MAX_ATTACHED_NAME_LEN, "{name:?} too long");
    let hash = &name[name.len() - 8..];
    assert!(is_hex(hash), "{name:?} does not end in 8 hex");
    let other = attached_name("x", input.attached_resource, input.workload, input.version);
    assert_eq!(
        &other[other.len() - 8..],
        hash,
        "hash depends on the deployment"
    );
    assert_eq!(
        name,
        attached_name(
            input.deployment,
            input.attached_resource,
            input.workload,
            input.version
        ),
        "not deterministic"
    );

    // Roots: whatever parses is a valid subdomain of at least two labels that leaves room for
    // the app label; error messages stay one short line however long the input.
    let root = match DomainRoot::parse(input.root) {
        Ok(r) => {
            let s = r.as_str();
            assert!(is_dns1123_subdomain(s), "root {s:?} accepted");
            assert!(
                s.contains('.') && s.len() <= MAX_DOMAIN_ROOT_LEN,
                "root {s:?}"
            );
            assert_eq!(s, input.root);
            r
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
            assert!(msg.len() < 1024, "error of {} bytes", msg.len());
            DomainRoot::parse(&long_root(input.root_len as usize)).expect("generated root is valid")
        }
    };

    // Domain parts: 3-12 characters, a DNS-1123 label without "--".
    for id in [input.tenant, input.extension] {
        let p = domain_part(id);
        assert!(
            (3..=12).contains(&p.part.len()),
            "part {:?} of {id:?}",
            p.part
        );
        assert!(is_dns1123_label(&p.part), "part {:?} of {id:?}", p.part);
        assert!(!p.part.contains("--"), "part {:?} of {id:?}", p.part);
        assert_eq!(p.normalized_id, normalize_id(id));
    }

    // App domains: valid DNS-1123 subdomains within 253 characters, first label within 63
    // with exactly one "--", at index 3 or later; the disambiguated form differs and both
    // are recognised by is_computed_domain.
    let plain = app_domain(input.tenant, input.extension, &root);
    let dis = disambiguated_app_domain(input.tenant, input.extension, &root);
    for d in [&plain, &dis] {
        assert!(is_dns1123_subdomain(d), "{d:?} is not a DNS-1123 subdomain");
        assert!(d.len() <= MAX_DNS1123_SUBDOMAIN_LEN, "{d:?} too long");
        let (label, rest) = d.split_once('.').expect("domain has a root");
        assert_eq!(rest, root.as_str());
        assert!(label.len() <= MAX_DNS1123_LABEL_LEN, "label {label:?}");
        assert!(is_dns1123_label(label), "label {label:?}");
        assert_eq!(label.matches("--").count(), 1, "label {label:?}");
        assert!(label.find("--").unwrap() >= 3, "label {label:?}");
        assert!(
            check_domain(d).is_ok(),
            "check_domain refuses computed {d:?}"
        );
        assert!(is_computed_domain(d, input.tenant, input.extension, &root));
    }
    assert_ne!(plain, dis);
    let h6 = disambiguator(input.tenant, input.extension);
    assert!(h6.len() == 6 && is_hex(&h6));
    assert!(dis.starts_with(&format!("{}-{h6}.", plain.split_once('.').unwrap().0)));

    // Every spelling of an id gives the same domain as its normalised form.
    let nt = normalize_id(input.tenant);
    let ne = normalize_id(input.extension);
    assert_eq!(
        app_domain(&nt, &ne, &root),
        plain,
        "normalised ids {nt:?}/{ne:?} give another domain"
    );
    assert_eq!(disambiguated_app_domain(&nt, &ne, &root), dis);

    // check_domain on arbitrary text: Ok only for valid subdomains; errors stay short.
    match check_domain(input.root) {
        Ok(_) => assert!(is_dns1123_subdomain(input.root), "{:?}", input.root),
        Err(e) => assert!(e.to_string().len() < 1024),
    }
});
