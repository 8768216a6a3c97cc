use super::attached::*;
use super::dns::*;
use super::domain::*;
use super::*;
use proptest::prelude::*;

/// A root of exactly `len` characters made of 63-character labels (and a shorter last one).
fn root_of_len(len: usize) -> String {
    let mut s = String::new();
    while s.len() + 64 < len {
        s.push_str(&"a".repeat(63));
        s.push('.');
    }
    s.push_str(&"b".repeat(len - s.len()));
    s
}

fn root(s: &str) -> DomainRoot {
    DomainRoot::parse(s).unwrap()
}

// Expected hashes in this file are literals computed outside the crate, with
//   printf '%s' "$input" | sha256sum | cut -c1-$n
// (e.g. `printf '%s' 'w/x/v' | sha256sum | cut -c1-8` -> fb05c908; UTF-8 input bytes).
// `h` is only used by the property test, whose inputs are generated.
fn h(input: &str, n: usize) -> String {
    sha256_hex_prefix(input.as_bytes(), n)
}

// ----- label values (issue 11 defect 4) -----

/// Golden values computed independently of this code with coreutils, e.g.
/// `printf '%s' 'a b' | sha256sum | cut -c1-8` -> c8687a08.
#[test]
fn label_values_are_kept_or_shortened_with_a_hash() {
    let long =
        "payments-worker-release-2026-11-30-build-4f1c2a9e-canary-blue-green-east-1.internal";
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("v1.2_rc-3", "v1.2_rc-3"),
        (&"a".repeat(63), &"a".repeat(63)),
        (
            long,
            "payments-worker-release-2026-11-30-build-4f1c2a9e-cana-eec0debe",
        ),
        ("a b", "a-b-c8687a08"),
        ("ÄÖÜ", "1eccaaf0"),
        ("-x-", "x-c6cf95e5"),
    ];
    crate::table_test::each(cases, |(input, want)| {
        let got = label_value(input);
        assert_eq!(&got, want, "{input:?}");
        assert!(is_label_value(&got), "{got:?}");
    });
}

// ----- DNS-1123 helpers -----

#[test]
fn dns1123_label_table() {
    let long63 = "a".repeat(63);
    let long64 = "a".repeat(64);
    let cases: &[(&str, bool)] = &[
        ("a", true),
        ("0", true),
        ("a-b", true),
        ("a--b", true),
        ("123", true),
        (&long63, true),
        ("", false),
        (&long64, false),
        ("-a", false),
        ("a-", false),
        ("A", false),
        ("a.b", false),
        ("a_b", false),
        ("a b", false),
        ("é", false),
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(is_dns1123_label(s), *want, "{s:?}");
    });
}

#[test]
fn dns1123_subdomain_table() {
    let long_label = "a".repeat(64); // Kubernetes does not limit labels here
    let l253 = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    let l254 = format!("{}.{}", "a".repeat(126), "b".repeat(127));
    let cases: &[(&str, bool)] = &[
        ("a", true),
        ("a.b", true),
        ("a-1.b-2.c", true),
        (&long_label, true),
        (&l253, true),
        (&l254, false),
        ("", false),
        (".", false),
        ("a.", false),
        (".a", false),
        ("a..b", false),
        ("-a.b", false),
        ("a.b-", false),
        ("a.-b", false),
        ("A.b", false),
        ("a_b.c", false),
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(is_dns1123_subdomain(s), *want, "{s:?}");
    });
}

proptest! {
    /// The one-pass check says what the definition says: non-empty, at most 253 bytes,
    /// dot-separated labels of the DNS-1123 label shape.
    #[test]
    fn dns1123_subdomain_is_its_definition(
        s in prop_oneof![
            "[a-z0-9.-]{0,12}",
            "([a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?\\.){0,4}[a-z0-9-]{0,8}",
            "[a-zA-Z0-9._/ é-]{0,20}",
            "[a-z.]{250,256}",
        ]
    ) {
        let by_definition = !s.is_empty()
            && s.len() <= MAX_DNS1123_SUBDOMAIN_LEN
            && s.split('.').all(is_label_shape);
        prop_assert_eq!(is_dns1123_subdomain(&s), by_definition, "{:?}", s);
    }
}

#[test]
fn label_value_table() {
    let l63 = "a".repeat(63);
    let l64 = "a".repeat(64);
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("a", true),
        ("A", true),
        ("v1.2_rc-3", true),
        ("a..b", true),
        ("a__b", true),
        (&l63, true),
        (&l64, false),
        ("-a", false),
        ("a-", false),
        ("_a", false),
        ("a.", false),
        ("a b", false),
        ("a/b", false),
        ("é", false),
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(is_label_value(s), *want, "{s:?}");
    });
}

// ----- attached names -----

#[test]
fn attached_name_table() {
    let cases: &[(&str, &str, &str, &str, String)] = &[
        (
            "payments-worker-v2",
            "worker-hpa",
            "payments-worker",
            "v2",
            String::from("payments-worker-v2-worker-hpa-40a40f25"),
        ),
        // lowercased; a run of other characters becomes one '-'
        (
            "Web.App",
            "HPA__x",
            "w",
            "v",
            String::from("web-app-hpa-x-f2aad826"),
        ),
        // existing '-' are kept as they are (the spec replaces only other characters)
        ("a-_b", "c", "w", "v", String::from("a--b-c-12ddf449")),
        // non-ASCII is outside [a-z0-9-]
        ("dé", "x", "w", "v", String::from("d--x-fb05c908")),
        // cut to 38 characters
        (
            &"d".repeat(50),
            "x",
            "w",
            "v",
            format!("{}-fb05c908", "d".repeat(38)),
        ),
        // '-' at the cut is removed: 37 d's then "-x" → cut at 38 ends in '-'
        (
            &"d".repeat(37),
            "xyz",
            "w",
            "v",
            format!("{}-0262b273", "d".repeat(37)),
        ),
        // beyond the spec: leading '-' removed, empty prefix → just h8
        ("", "hpa", "w", "v", String::from("hpa-30ab896d")),
        ("..a", "b", "w", "v", String::from("a-b-da6c2eda")),
        ("", "", "w", "v", String::from("50acd45c")),
        ("日本", "語", "w", "v", String::from("32408a00")),
    ];
    crate::table_test::each(cases, |(dep, atr, wl, ver, want)| {
        let got = attached_name(dep, atr, wl, ver);
        assert_eq!(&got, want, "{dep:?} {atr:?} {wl:?} {ver:?}");
        assert!(got.len() <= MAX_ATTACHED_NAME_LEN);
        assert!(is_dns1123_label(&got), "{got:?}");
    });
}

#[test]
fn attached_names_differ_when_prefixes_cut_alike() {
    let dep = "a-very-long-deployment-name-that-gets-cut-somewhere";
    let n1 = attached_name(dep, "hpa", "wl", "v1");
    let n2 = attached_name(dep, "hpa", "wl", "v2");
    let n3 = attached_name(dep, "pdb", "wl", "v1");
    assert_eq!(n1[..38], n2[..38]);
    assert_eq!(n1[..38], n3[..38]);
    assert_ne!(n1, n2);
    assert_ne!(n1, n3);
    assert_ne!(n2, n3);
    assert_eq!(
        n1,
        String::from("a-very-long-deployment-name-that-gets-6a712539")
    );
}

// ----- normalisation, UUIDs, slugs, parts -----

#[test]
fn normalize_id_table() {
    let u = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
    let cases: &[(&str, &str)] = &[
        (u, u),
        ("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", u),
        ("{3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c}", u),
        ("  {3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}\n", u),
        ("urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c", u),
        ("URN:UUID:3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", u),
        ("{urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c}", u),
        ("3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c", u),
        ("{ 3F2A9C1E7B4D4E0A9C551D2E3F4A5B6C }", u),
        ("Acme Corp", "acme corp"),
        ("{acme}", "acme"),
        ("{acme", "{acme"),
        ("acme}", "acme}"),
        ("urn:uuid:acme", "acme"),
        ("x-urn:uuid:acme", "x-urn:uuid:acme"),
        ("   ", ""),
        ("", ""),
        ("ÄB", "Äb"), // ASCII-only lowercasing
    ];
    crate::table_test::each(cases, |(id, want)| {
        assert_eq!(normalize_id(id), *want, "{id:?}");
    });
}

#[test]
fn canonical_uuid_table() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "00000000-0000-0000-0000-000000000000",
            Some("00000000-0000-0000-0000-000000000000"),
        ),
        (
            "0123456789abcdef0123456789abcdef",
            Some("01234567-89ab-cdef-0123-456789abcdef"),
        ),
        ("0123456789abcdef0123456789abcdeg", None),
        ("0123456789abcdef0123456789abcde", None),
        ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6", None),
        ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6cc", None),
        ("3f2a9c1e07b4d-4e0a-9c55-1d2e3f4a5b6c", None),
        ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6g", None),
        ("3f2a9c1e_7b4d_4e0a_9c55_1d2e3f4a5b6c", None),
        ("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", None), // expects normalised input
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(canonical_uuid(s).as_deref(), *want, "{s:?}");
    });
}

#[test]
fn domain_part_table() {
    use PartKind::*;
    let fb = |slug: &str| HashFallback { slug: slug.into() };
    let cases: Vec<(&str, String, PartKind)> = vec![
        // UUIDs in every spelling → first 8 hex
        (
            "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
            "3f2a9c1e".into(),
            Uuid,
        ),
        (
            "3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C",
            "3f2a9c1e".into(),
            Uuid,
        ),
        (
            "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
            "3f2a9c1e".into(),
            Uuid,
        ),
        (
            "urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
            "3f2a9c1e".into(),
            Uuid,
        ),
        ("3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c", "3f2a9c1e".into(), Uuid),
        // slugs
        ("invoicing-pro", "invoicing-pr".into(), Slug),
        ("Acme", "acme".into(), Slug),
        ("  Acme  Corp!! ", "acme-corp".into(), Slug),
        ("--a__b--", "a-b".into(), Slug),
        ("abcdefghijkl", "abcdefghijkl".into(), Slug),
        ("abcdefghijklmnop", "abcdefghijkl".into(), Slug),
        // trailing separator at the cut
        ("abcdefghijk-x", "abcdefghijk".into(), Slug),
        ("abcdefghijk..x", "abcdefghijk".into(), Slug),
        ("abc", "abc".into(), Slug),
        ("a-b", "a-b".into(), Slug),
        ("日本acme", "acme".into(), Slug),
        ("café-crème", "caf-cr-me".into(), Slug),
        ("xn--abc", "xn-abc".into(), Slug),
        // not a UUID (wrong length): slug
        ("3f2a9c1e-7b4d-4e0a-9c55", "3f2a9c1e-7b4".into(), Slug),
        // too short → hash of the normalised id
        ("a", String::from("ca978112"), fb("a")),
        ("AB", String::from("fb8e20fc"), fb("ab")),
        ("xn", String::from("ce482786"), fb("xn")),
        ("a.b", "a-b".into(), Slug),
        ("a.", String::from("5ab640fa"), fb("a")),
        ("{ab}", String::from("fb8e20fc"), fb("ab")),
        ("日本", String::from("cf2abf0c"), fb("")),
        ("", String::from("e3b0c442"), fb("")),
        ("   ", String::from("e3b0c442"), fb("")),
        ("---", String::from("cb3f91d5"), fb("")),
    ];
    crate::table_test::each(cases, |(id, part, kind)| {
        let got = domain_part(id);
        assert_eq!(got.part, part, "{id:?}");
        assert_eq!(got.kind, kind, "{id:?}");
        assert_eq!(got.normalized_id, normalize_id(id));
        assert!(is_dns1123_label(&got.part) && !got.part.contains("--"));
        assert!((3..=12).contains(&got.part.len()));
    });
}

#[test]
fn domain_part_display() {
    assert_eq!(
        domain_part("{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}").to_string(),
        r#"3f2a9c1e: first 8 hex characters of the UUID "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c""#
    );
    assert_eq!(
        domain_part("Invoicing Pro").to_string(),
        r#"invoicing-pr: slug of "invoicing pro" (first 12 characters at most)"#
    );
    assert_eq!(
        domain_part("日本").to_string(),
        format!(
            r#"{}: first 8 hex characters of SHA-256 of "日本", because its slug "" is shorter than 3 characters"#,
            String::from("cf2abf0c")
        )
    );
}

// ----- domains -----

#[test]
fn app_domain_table() {
    let r = root("apps.example.com");
    let u = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
    let cases: Vec<(&str, &str, String)> = vec![
        (
            u,
            "invoicing-pro",
            "3f2a9c1e--invoicing-pr.apps.example.com".into(),
        ),
        (
            "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
            "CRM",
            "3f2a9c1e--crm.apps.example.com".into(),
        ),
        ("acme", "x", String::from("acme--2d711642.apps.example.com")),
        ("", "", "e3b0c442--e3b0c442.apps.example.com".into()),
        (
            "日本",
            "ab",
            String::from("cf2abf0c--fb8e20fc.apps.example.com"),
        ),
    ];
    crate::table_test::each(cases, |(t, e, want)| {
        assert_eq!(app_domain(t, e, &r), want, "{t:?} {e:?}");
        let d = disambiguated_app_domain(t, e, &r);
        let (label, rest) = want.split_once('.').unwrap();
        assert_eq!(d, format!("{label}-{}.{rest}", disambiguator(t, e)));
    });
}

#[test]
fn disambiguator_input_is_length_prefixed_normalised_pair() {
    assert_eq!(disambiguator("ACME", "invoicing-pro"), "a7a57c");
    assert_eq!(
        disambiguator("{3F2A9C1E7B4D4E0A9C551D2E3F4A5B6C}", "crm"),
        "9eb129"
    );
    // a separator-based encoding would collide on these pairs; lengths keep them apart
    assert_ne!(disambiguator("a\nb", "c"), disambiguator("a", "b\nc"));
    assert_ne!(disambiguator("ab", "c"), disambiguator("a", "bc"));
    // order matters
    assert_ne!(disambiguator("acme", "crm"), disambiguator("crm", "acme"));
}

#[test]
fn collisions_share_plain_domain_but_not_disambiguated() {
    let r = root("apps.example.com");
    type Pair<'a> = (&'a str, &'a str);
    let pairs: &[(Pair, Pair)] = &[
        // UUIDv7-style ids sharing their first 8 hex
        (
            ("01890a5d-ac96-774b-bcce-b302099a8057", "crm"),
            ("01890a5d-ac97-7c3e-9d1f-5e2a4b6c8d90", "crm"),
        ),
        // slugs that truncate to the same 12 characters
        (
            ("acme", "invoicing-professional"),
            ("acme", "invoicing-pro"),
        ),
        (("acme", "invoicing pro"), ("acme", "Invoicing_Pro")),
    ];
    for ((t1, e1), (t2, e2)) in pairs {
        assert_eq!(app_domain(t1, e1, &r), app_domain(t2, e2, &r));
        assert_ne!(
            disambiguated_app_domain(t1, e1, &r),
            disambiguated_app_domain(t2, e2, &r)
        );
        assert!(!is_computed_domain(
            &disambiguated_app_domain(t1, e1, &r),
            t2,
            e2,
            &r
        ));
    }
    // one UUID, any spelling → same domains (no collision with itself)
    let spellings = [
        "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
        "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
        "urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
        "3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c",
    ];
    for s in spellings {
        assert_eq!(
            disambiguated_app_domain(s, "crm", &r),
            disambiguated_app_domain(spellings[0], "crm", &r)
        );
    }
}

#[test]
fn is_computed_domain_table() {
    let r = root("apps.example.com");
    let dis = disambiguated_app_domain("acme", "crm", &r);
    let cases: Vec<(String, bool)> = vec![
        ("acme--crm.apps.example.com".into(), true),
        (dis.clone(), true),
        ("ACME--crm.apps.example.com".into(), false),
        ("acme--crm.apps.example.com.".into(), false),
        ("acme--crm.example.com".into(), false),
        ("acme--crm-000000.apps.example.com".into(), false),
        (format!("{dis}x"), false),
        ("".into(), false),
    ];
    crate::table_test::each(cases, |(d, want)| {
        assert_eq!(is_computed_domain(&d, "acme", "crm", &r), want, "{d:?}");
    });
    // the ids are normalised the same way on both sides
    assert!(is_computed_domain(
        "acme--crm.apps.example.com",
        " ACME ",
        "{crm}",
        &r
    ));
}

#[test]
fn domain_root_accepts() {
    let max = root_of_len(MAX_DOMAIN_ROOT_LEN);
    assert_eq!(max.len(), 219);
    for s in [
        "example.com",
        "apps.example.com",
        "a.b",
        "xn--p1ai.ru",
        "1.2",
        &max,
    ] {
        let r = DomainRoot::parse(s).unwrap();
        assert_eq!(r.as_str(), s);
        assert_eq!(r.to_string(), s);
        assert_eq!(s.parse::<DomainRoot>().unwrap(), r);
    }
    assert_eq!(MAX_DOMAIN_ROOT_LEN, 219);
}

#[test]
fn domain_root_rejects() {
    let long_label = format!("{}.com", "a".repeat(64));
    let too_long = root_of_len(MAX_DOMAIN_ROOT_LEN + 1);
    let way_too_long = ["abc"; 70].join(".");
    let cases: Vec<(&str, &str)> = vec![
        (
            "",
            r#"domain root is empty; set it to the DNS zone app domains are created under, e.g. "apps.example.com""#,
        ),
        (
            "Example.com",
            r#"domain root "Example.com" has uppercase letters; write it in lowercase: "example.com""#,
        ),
        (
            "Example.com.",
            r#"domain root "Example.com." has uppercase letters; write it in lowercase: "example.com""#,
        ),
        (
            "example.com.",
            r#"domain root "example.com." ends with a dot; drop the trailing dot: "example.com""#,
        ),
        (
            "com",
            r#"domain root "com" has a single label; use at least two, e.g. "apps.com""#,
        ),
        (
            "-a.com",
            r#"domain root "-a.com": label "-a" starts or ends with '-'; each label is 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"#,
        ),
        (
            "a-.com",
            r#"domain root "a-.com": label "a-" starts or ends with '-'; each label is 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"#,
        ),
        (
            "a..com",
            r#"domain root "a..com" has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
        ),
        (
            ".a.com",
            r#"domain root ".a.com" has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
        ),
        (
            ".",
            r#"domain root "." has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
        ),
        (
            "a_b.com",
            r#"domain root "a_b.com" contains '_'; use only lowercase letters, digits, '-' and '.'"#,
        ),
        (
            " example.com",
            r#"domain root " example.com" contains ' '; use only lowercase letters, digits, '-' and '.'"#,
        ),
        (
            "exa\nmple.com",
            r#"domain root "exa mple.com" contains '\n'; use only lowercase letters, digits, '-' and '.'"#,
        ),
        (
            "https://example.com",
            r#"domain root "https://example.com" contains ':'; use only lowercase letters, digits, '-' and '.'"#,
        ),
        (
            "bücher.de",
            r#"domain root "bücher.de" contains 'ü'; use only lowercase letters, digits, '-' and '.'"#,
        ),
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(DomainRoot::parse(s).unwrap_err().to_string(), want, "{s:?}");
    });
    assert!(matches!(
        DomainRoot::parse(&long_label),
        Err(NamingError::InvalidRootLabel {
            problem: "is longer than 63 characters",
            ..
        })
    ));
    assert_eq!(
        DomainRoot::parse(&too_long),
        Err(NamingError::RootTooLong {
            root: shown(&too_long),
            len: 220,
            max: 219
        })
    );
    assert!(DomainRoot::parse(&too_long).unwrap_err().to_string().contains(
        "is 220 characters long; at most 219 fit, leaving room for the app label within the 253-character DNS limit"
    ));
    assert!(matches!(
        DomainRoot::parse(&way_too_long),
        Err(NamingError::RootTooLong {
            len: 279,
            max: 219,
            ..
        })
    ));
}

#[test]
fn check_domain_table() {
    let r63 = format!("{}.example.com", "a".repeat(63 - 12));
    let r64 = format!("{}.example.com", "a".repeat(64 - 12));
    let long_label = format!("{}.com", "a".repeat(64));
    let l254 = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62),
    ]
    .join(".");
    let ok: Vec<(&str, Option<String>)> = vec![
        ("acme--crm.apps.example.com", None),
        ("a", None),
        (&r63, None),
        (
            &r64,
            Some(format!(
                "domain {r64:?} is 64 characters long; over 63 it cannot be a certificate common name or a label value downstream (a shorter --domain-root avoids this)"
            )),
        ),
    ];
    for (d, want) in ok {
        let got = check_domain(d).unwrap();
        assert_eq!(got.warning().map(str::to_string), want, "{d:?}");
    }
    let bad: Vec<(&str, &str)> = vec![
        ("", "it is empty"),
        ("Acme.com", "it has uppercase letters; use lowercase"),
        ("acme.com.", "it ends with a dot; drop the trailing dot"),
        ("a_b.com", "it contains '_'; only lowercase letters, digits, '-' and '.' are allowed"),
        ("a..com", "it has an empty label (a leading dot or two dots in a row)"),
        ("-a.com", "label \"-a\" starts or ends with '-'; labels start and end with a letter or digit"),
        (&long_label, "label \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is longer than 63 characters"),
        (&l254, "it is 254 characters long, over the limit of 253"),
    ];
    for (d, problem) in bad {
        assert_eq!(
            check_domain(d),
            Err(NamingError::InvalidDomain {
                domain: shown(d),
                problem: problem.into()
            }),
            "{d:?}"
        );
    }
    // error messages stay one line and bounded even for hostile input
    let hostile = format!("a\n{}", "x".repeat(10_000));
    let msg = check_domain(&hostile).unwrap_err().to_string();
    assert!(!msg.contains('\n') && msg.len() < 300, "{msg}");
}

#[test]
fn computed_domain_with_long_root_warns() {
    let r = root("tenants.eu-west-1.apps.platform.internal.example.com");
    let d = app_domain("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c", "invoicing-pro", &r);
    assert_eq!(
        d,
        "3f2a9c1e--invoicing-pr.tenants.eu-west-1.apps.platform.internal.example.com"
    );
    assert!(check_domain(&d).unwrap().warning().is_some());
    // the longest root still gives valid domains
    let max = root(&root_of_len(MAX_DOMAIN_ROOT_LEN));
    let d = disambiguated_app_domain("abcdefghijklmnop", "qrstuvwxyzabcd", &max);
    assert_eq!(d.len(), MAX_DNS1123_SUBDOMAIN_LEN);
    assert!(check_domain(&d).is_ok());
}

#[test]
fn root_errors_stay_short_with_control_characters() {
    // Found by the naming fuzz target: 118 U+0019 quoted with `{:?}` grew to `\u{19}`
    // each and the error past 1 KiB.
    let root = format!("id'\0{}UUUUi-.com", "\u{19}".repeat(200));
    let msg = DomainRoot::parse(&root).unwrap_err().to_string();
    assert!(msg.len() < 1024, "{} bytes: {msg}", msg.len());
    assert!(!msg.contains("\\u{19}"), "{msg}");
}

#[test]
fn shown_cuts_on_char_boundary() {
    assert_eq!(shown("abc"), "abc");
    let s = "é".repeat(100);
    assert_eq!(shown(&s), format!("{}…", "é".repeat(80)));
}

/// The three checks side by side (this table was in `policy`, which had its own copies).
#[test]
fn name_syntax_table_all_three_checks() {
    // (input, dns1123 label, dns1123 subdomain, label value)
    let long63 = "a".repeat(63);
    let long64 = "a".repeat(64);
    let long253 = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    let long254 = format!("{}.{}", "a".repeat(127), "b".repeat(126));
    let cases: Vec<(&str, bool, bool, bool)> = vec![
        ("", false, false, true),
        ("web", true, true, true),
        ("web-1", true, true, true),
        ("web.v1", false, true, true),
        ("Web", false, false, true),
        ("web_1", false, false, true),
        ("-web", false, false, false),
        ("web-", false, false, false),
        ("web.", false, false, false),
        (".web", false, false, false),
        ("a..b", false, false, true),
        ("a.-b", false, false, true),
        ("a b", false, false, false),
        ("wéb", false, false, false),
        (&long63, true, true, true),
        (&long64, false, true, false),
        (&long253, false, true, false),
        (&long254, false, false, false),
    ];
    crate::table_test::each(cases, |(s, label, sub, value)| {
        assert_eq!(is_dns1123_label(s), label, "label {s:?}");
        assert_eq!(is_dns1123_subdomain(s), sub, "subdomain {s:?}");
        assert_eq!(is_label_value(s), value, "label value {s:?}");
    });
}

// ----- property tests -----

fn k8s_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?"
}

fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[ a-zA-Z0-9_.{}:-]{0,30}",
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "\\{?(urn:uuid:)?[0-9a-fA-F]{32}\\}?",
        "(xn|ab|a|)",
    ]
}

fn valid_root() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 2..5)
        .prop_map(|labels| labels.join("."))
}

proptest! {
    #[test]
    fn label_value_is_always_a_valid_label_value(s in "\\PC{0,300}") {
        let v = label_value(&s);
        prop_assert!(is_label_value(&v), "{:?} -> {:?}", s, v);
        if is_label_value(&s) {
            prop_assert_eq!(v, s);
        }
    }
}

proptest! {
    #[test]
    fn attached_name_is_short_valid_deterministic(
        dep in prop_oneof![k8s_name(), any::<String>()],
        atr in prop_oneof![k8s_name(), any::<String>()],
        wl in any::<String>(),
        ver in any::<String>(),
    ) {
        let n = attached_name(&dep, &atr, &wl, &ver);
        prop_assert!(n.len() <= MAX_ATTACHED_NAME_LEN, "{}", n);
        prop_assert!(is_dns1123_label(&n), "{:?}", n);
        prop_assert_eq!(&n, &attached_name(&dep, &atr, &wl, &ver));
        let h8 = h(&format!("{wl}/{atr}/{ver}"), 8);
        prop_assert!(n.ends_with(&h8));
    }

    #[test]
    fn distinct_triples_give_distinct_attached_names(
        dep in k8s_name(),
        a in (k8s_name(), k8s_name(), "[a-zA-Z0-9._-]{1,20}"),
        b in (k8s_name(), k8s_name(), "[a-zA-Z0-9._-]{1,20}"),
    ) {
        prop_assume!(a != b);
        // the same deployment name, so prefixes often coincide: the hash tells them apart
        prop_assert_ne!(attached_name(&dep, &a.1, &a.0, &a.2), attached_name(&dep, &b.1, &b.0, &b.2));
    }

    #[test]
    fn domain_part_is_a_short_label_without_double_dash(id in any_id()) {
        let p = domain_part(&id);
        prop_assert!((MIN_PART_LEN..=SLUG_PART_LEN).contains(&p.part.len()), "{:?}", p);
        prop_assert!(is_dns1123_label(&p.part), "{:?}", p);
        prop_assert!(!p.part.contains("--"), "{:?}", p);
        prop_assert_eq!(&p, &domain_part(&id));
        prop_assert_eq!(normalize_id(&p.normalized_id), p.normalized_id.clone());
    }

    /// Asserted for every generated (tenant, extension, root): both forms are valid
    /// lowercase DNS-1123 subdomains with labels ≤ 63 (check_domain passes); their first
    /// label contains "--" exactly once, at byte index ≥ 3 (so it is neither `ab--`- nor
    /// `xn--`-shaped: chars 2..4 are never "--"); deterministic; plain ≠ disambiguated;
    /// the disambiguated first label is the plain one + "-" + 6 hex; both are
    /// recognised by is_computed_domain. Root labels are the operator's and not checked.
    #[test]
    fn app_domains_are_valid_and_well_shaped(t in any_id(), e in any_id(), r in valid_root()) {
        let r = DomainRoot::parse(&r).unwrap();
        let plain = app_domain(&t, &e, &r);
        let dis = disambiguated_app_domain(&t, &e, &r);
        for d in [&plain, &dis] {
            prop_assert!(is_dns1123_subdomain(d), "{}", d);
            prop_assert!(check_domain(d).is_ok(), "{}", d);
            prop_assert_eq!(d.to_ascii_lowercase(), d.clone());
            let (first, rest) = d.split_once('.').unwrap();
            prop_assert_eq!(rest, r.as_str());
            prop_assert_eq!(first.matches("--").count(), 1, "{}", first);
            let at = first.find("--").unwrap();
            prop_assert!(at >= 3, "{}", first);
            prop_assert_ne!(first.get(2..4), Some("--"));
            prop_assert!(is_computed_domain(d, &t, &e, &r));
        }
        prop_assert_ne!(&plain, &dis);
        prop_assert_eq!(&plain, &app_domain(&t, &e, &r));
        prop_assert_eq!(&dis, &disambiguated_app_domain(&t, &e, &r));
        let plain_first = plain.split_once('.').unwrap().0;
        let dis_first = dis.split_once('.').unwrap().0;
        prop_assert_eq!(dis_first, format!("{plain_first}-{}", disambiguator(&t, &e)));
        prop_assert!(disambiguator(&t, &e).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn distinct_normalised_pairs_give_distinct_disambiguated_domains(
        a in (any_id(), any_id()), b in (any_id(), any_id()),
    ) {
        let na = (normalize_id(&a.0), normalize_id(&a.1));
        let nb = (normalize_id(&b.0), normalize_id(&b.1));
        prop_assume!(na != nb);
        let r = root("apps.example.com");
        prop_assert_ne!(disambiguated_app_domain(&a.0, &a.1, &r), disambiguated_app_domain(&b.0, &b.1, &r));
    }

    #[test]
    fn uuid_spellings_normalise_alike(u in "[0-9a-f]{32}", upper in any::<bool>(), dashes in any::<bool>(), braces in any::<bool>(), urn in any::<bool>()) {
        let canonical = format!("{}-{}-{}-{}-{}", &u[0..8], &u[8..12], &u[12..16], &u[16..20], &u[20..]);
        let mut s = if dashes { canonical.clone() } else { u.clone() };
        if upper { s = s.to_ascii_uppercase(); }
        if urn { s = format!("urn:uuid:{s}"); }
        if braces { s = format!("{{{s}}}"); }
        let p = domain_part(&s);
        prop_assert_eq!(p.normalized_id, canonical);
        prop_assert_eq!(p.kind, PartKind::Uuid);
        prop_assert_eq!(p.part, u[..8].to_string());
    }

    #[test]
    fn domain_root_parse_accepts_only_valid_roots(s in prop_oneof![valid_root(), any::<String>(), "[a-zA-Z0-9.-]{0,30}"]) {
        match DomainRoot::parse(&s) {
            Ok(r) => {
                prop_assert_eq!(r.as_str(), s.as_str());
                prop_assert!(is_dns1123_subdomain(&s));
                prop_assert!(s.contains('.'));
                prop_assert!(s.len() <= MAX_DOMAIN_ROOT_LEN);
                prop_assert!(s.split('.').all(is_dns1123_label));
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.chars().any(char::is_control), "{}", msg);
            }
        }
    }

    #[test]
    fn valid_roots_parse(s in valid_root()) {
        prop_assert!(DomainRoot::parse(&s).is_ok());
    }

    #[test]
    fn label_checks_agree(s in "[a-z0-9-]{0,70}") {
        prop_assert_eq!(is_dns1123_label(&s), is_dns1123_subdomain(&s) && s.len() <= 63);
        if is_dns1123_label(&s) {
            prop_assert!(is_label_value(&s));
        }
    }
}
