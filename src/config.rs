//! Validated configuration, built from the command line (see `cli`).
//!
//! Flags are parsed by clap; here they are checked for meaning (a kind list with an empty
//! entry, a bad domain root) so that a mistake stops start-up with a message naming the flag.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{flag} (env {env}): {problem}")]
    Invalid {
        flag: &'static str,
        env: &'static str,
        problem: String,
    },
}

/// Checks a comma-separated name list: no empty entries (a trailing comma is a typo that
/// would otherwise silently match nothing).
pub fn check_list(
    flag: &'static str,
    env: &'static str,
    items: &[String],
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, raw) in items.iter().enumerate() {
        let t = raw.trim();
        if t.is_empty() {
            return Err(ConfigError::Invalid {
                flag,
                env,
                problem: format!(
                    "entry {} is empty; write a comma-separated list without empty entries",
                    i + 1
                ),
            });
        }
        out.push(t.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_rejects_empty_entries() {
        let ok = check_list(
            "--banned-kinds",
            "BANNED_KINDS",
            &[" Pod ".into(), "Job".into()],
        )
        .unwrap();
        assert_eq!(ok, vec!["Pod", "Job"]);
        let e = check_list("--banned-kinds", "BANNED_KINDS", &["Pod".into(), "".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--banned-kinds (env BANNED_KINDS): entry 2 is empty; write a comma-separated list without empty entries"
        );
    }
}
