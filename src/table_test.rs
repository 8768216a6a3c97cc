//! Test-only support for table-driven unit tests: every row runs, and one assertion at the
//! end lists every failing row, so a bad early row does not hide later ones.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `check` on every row of `rows` (as a `for` loop over `rows` would); a row fails when
/// `check` panics (e.g. an `assert_eq!`). Panics once at the end naming each failing row
/// (index and `Debug` form) with its own failure message.
pub(crate) fn each<T: Debug>(rows: impl IntoIterator<Item = T>, mut check: impl FnMut(T)) {
    let mut failed = Vec::new();
    let mut count = 0;
    for (i, row) in rows.into_iter().enumerate() {
        count += 1;
        let name = format!("{row:?}");
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(row))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-text panic".to_string());
            failed.push(format!("row {i} {name}: {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        count,
        failed.join("\n")
    );
}

#[test]
fn each_runs_every_row_and_names_each_failure() {
    let out = catch_unwind(|| each([1, 2, 3, 4], |n| assert!(n % 2 == 1, "even {n}")));
    let e = out.expect_err("rows 1 and 3 fail");
    let msg = e.downcast_ref::<String>().expect("text panic");
    assert!(msg.starts_with("2 of 4 rows failed:"), "{msg}");
    assert!(msg.contains("row 1 2: even 2"), "{msg}");
    assert!(msg.contains("row 3 4: even 4"), "{msg}");
}

#[test]
fn each_passes_when_every_row_passes() {
    each(["a", "b"], |s| assert_eq!(s.len(), 1));
}
