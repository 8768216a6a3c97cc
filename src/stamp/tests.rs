use super::*;
use crate::borrowed_json::Value as Doc;
use serde_json::json;

fn ring(ids: &[&str]) -> KeyRing {
    KeyRing::new(
        ids.iter()
            .map(|id| {
                (
                    id.to_string(),
                    format!("{id}-0123456789abcdef0123456789abcdef").into_bytes(),
                )
            })
            .collect(),
    )
    .unwrap()
}

fn spec() -> Doc<'static> {
    Doc::from(
        json!({"workloadRef": {"name": "web"}, "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"maxReplicas": 3}}}),
    )
}

#[test]
fn golden_stamp() {
    // Computed independently:
    //   printf 'tether.dev/admitted v1\n8:payments\n3:hpa\n{"a":1}' |
    //     openssl dgst -sha256 -hmac "k1-0123456789abcdef0123456789abcdef" -binary |
    //     base64 | tr '+/' '-_' | tr -d '='
    let spec = Doc::from(json!({"a": 1}));
    let s = Subject {
        namespace: "payments",
        name: "hpa",
        spec: &spec,
    };
    assert_eq!(ring(&["k1"]).sign(&s), GOLDEN);
}
const GOLDEN: &str = "v1:k1:5EF-Zxb5KErZBW2JafAxKfoJjlo170kdisOQK_Kl_CE";

#[test]
fn verify_table() {
    /// (what, subject, stamp, expected verdict)
    type Case<'a> = (&'a str, Subject<'a>, Option<String>, Result<(), StampError>);
    let keys = ring(&["k1"]);
    let spec = spec();
    let s = Subject {
        namespace: "payments",
        name: "hpa",
        spec: &spec,
    };
    let good = keys.sign(&s);
    let other_spec = Doc::from(json!({"workloadRef": {"name": "web"}, "object": {"kind": "Role"}}));
    let cases: Vec<Case<'_>> = vec![
        ("its own stamp", s, Some(good.clone()), Ok(())),
        ("no stamp", s, None, Err(StampError::Missing)),
        (
            "other namespace",
            Subject {
                namespace: "kube-system",
                ..s
            },
            Some(good.clone()),
            Err(StampError::Mismatch),
        ),
        (
            "other name",
            Subject { name: "hpa2", ..s },
            Some(good.clone()),
            Err(StampError::Mismatch),
        ),
        (
            "other spec",
            Subject {
                spec: &other_spec,
                ..s
            },
            Some(good.clone()),
            Err(StampError::Mismatch),
        ),
        ("garbage", s, Some("yes".into()), Err(StampError::Malformed)),
        (
            "bad base64",
            s,
            Some("v1:k1:!!".into()),
            Err(StampError::Malformed),
        ),
        (
            "other format",
            s,
            Some(good.replacen("v1", "v2", 1)),
            Err(StampError::Malformed),
        ),
        (
            "unknown key",
            s,
            Some(good.replacen("k1", "k9", 1)),
            Err(StampError::UnknownKey("k9".into())),
        ),
        (
            "truncated tag",
            s,
            Some(good[..good.len() - 3].to_string()),
            Err(StampError::Mismatch),
        ),
    ];
    let failed: Vec<String> = cases
        .into_iter()
        .filter_map(|(what, subj, stamp, want)| {
            let got = keys.verify(&subj, stamp.as_deref());
            (got != want).then(|| format!("{what}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn stamps_survive_reencoding() {
    let keys = ring(&["k1"]);
    // As the webhook reads it (borrowed, from the review's text).
    let sent: Doc<'_> = serde_json::from_str(r#"{"b":{"y":2.0,"x":[1,2.5]},"a":"s"}"#).unwrap();
    // What the controller reads back from the API server: keys reordered, 2.0 as 2.
    let stored: serde_json::Value =
        serde_json::from_str(r#"{"a":"s","b":{"x":[1,2.5],"y":2}}"#).unwrap();
    let stored = Doc::from(&stored);
    let stamp = keys.sign(&Subject {
        namespace: "n",
        name: "x",
        spec: &sent,
    });
    assert_eq!(
        keys.verify(
            &Subject {
                namespace: "n",
                name: "x",
                spec: &stored
            },
            Some(&stamp)
        ),
        Ok(())
    );
}

#[test]
fn rotation_signs_with_the_newest_and_verifies_with_all() {
    let spec = spec();
    let s = Subject {
        namespace: "payments",
        name: "hpa",
        spec: &spec,
    };
    let old = ring(&["k2026-01-01"]);
    let old_stamp = old.sign(&s);
    let both = ring(&["k2026-01-01", "k2026-11-30"]);
    let new_stamp = both.sign(&s);
    assert!(new_stamp.starts_with("v1:k2026-11-30:"), "{new_stamp}");
    assert_eq!(both.verify(&s, Some(&old_stamp)), Ok(()));
    assert!(!both.is_current(&old_stamp));
    assert!(both.is_current(&new_stamp));
    let retired = ring(&["k2026-11-30"]);
    assert_eq!(
        retired.verify(&s, Some(&old_stamp)),
        Err(StampError::UnknownKey("k2026-01-01".into()))
    );
}

#[test]
fn bad_key_sets_are_refused() {
    let short = KeyRing::new(vec![("k1".into(), b"short".to_vec())]).unwrap_err();
    assert!(
        short.contains("key \"k1\" has 5 bytes; use at least 32"),
        "{short}"
    );
    let id = KeyRing::new(vec![("K 1".into(), vec![0; 32])]).unwrap_err();
    assert!(id.starts_with("key id \"K 1\""), "{id}");
    assert_eq!(
        KeyRing::new(vec![]).unwrap_err(),
        "no keys: add at least one key file"
    );
}

#[test]
fn keys_from_a_kubelet_style_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2026_11_30_12_00_00.000000001");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("k1"), format!("{}\n", "a".repeat(40))).unwrap();
    std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/k1", dir.path().join("k1")).unwrap();
    let ring = KeyRing::from_dir(dir.path()).unwrap();
    assert_eq!(ring.ids(), vec!["k1"]);
    let empty = tempfile::tempdir().unwrap();
    let e = KeyRing::from_dir(empty.path()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(": no keys: add at least one key file"),
        "{e}"
    );
}
