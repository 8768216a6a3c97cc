//! The CRD copies in the chart and in webhook-config/ are exactly what `tether crds` prints.

use std::process::Command;

#[test]
fn generated_crds_do_not_drift() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(generated.contains("name: attachedresources.tether.dev"));
    assert!(generated.contains("name: appdomains.tether.dev"));
    for copy in [
        "charts/tether/crds/tether.dev.yaml",
        "webhook-config/crds.yaml",
    ] {
        let path = format!("{}/{copy}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{copy} differs from `tether crds`; regenerate with: cargo run -- crds > {copy}"
        );
    }
}
