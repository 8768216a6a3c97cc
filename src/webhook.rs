//! The two webhook paths. A leaf module: `metrics` (infrastructure) keys its histograms by
//! it, and `admission` (domain) dispatches on it, without either importing the other.

/// Which webhook path a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    Mutate,
    Validate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Mutate => "mutate",
            Webhook::Validate => "validate",
        }
    }
}
