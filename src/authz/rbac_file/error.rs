//! Why an RBAC file could not be loaded: where, what and which field.

use std::fmt;

use super::ACCEPTED;

/// Where in the file an object is: 1-based document number (documents are separated by
/// `---`; a leading `---` opens document 1, and empty documents count), plus the index in
/// `items` when the object is inside a List.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based YAML document number.
    pub document: usize,
    /// 0-based index in the List's `items`, when inside a List.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            None => write!(f, "document {}", self.document),
            Some(i) => write!(f, "document {}, items[{i}]", self.document),
        }
    }
}

/// Why an RBAC file could not be loaded. Each variant says where (document, List item), what
/// (kind and name) and, for invalid objects, which field, so the operator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacFileError {
    /// The file is beyond what tether evaluates (nesting depth, aggregation size).
    #[error("RBAC file: {what}; simplify the file")]
    TooLarge {
        /// What limit, with its value.
        what: String,
    },
    /// The text is not YAML (the message carries line and column).
    #[error("RBAC file, document {document}: not valid YAML: {message}")]
    Yaml {
        /// 1-based document number.
        document: usize,
        /// Parser message.
        message: String,
    },
    /// A document (or List item) that is not a mapping.
    #[error(
        "RBAC file, {at}: expected a Kubernetes object (a mapping with apiVersion and kind), \
         found {found}; {ACCEPTED}"
    )]
    NotAnObject {
        /// Where.
        at: Location,
        /// What was found instead (`a sequence`, `a string`, ...).
        found: &'static str,
    },
    /// An object without a `kind`.
    #[error("RBAC file, {at}: missing `kind`; {ACCEPTED}")]
    MissingKind {
        /// Where.
        at: Location,
    },
    /// An object of a kind this file cannot hold.
    #[error(
        "RBAC file, {at}: unsupported kind {kind:?}{}; {ACCEPTED}",
        named(name)
    )]
    UnknownKind {
        /// Where.
        at: Location,
        /// The kind found.
        kind: String,
        /// `metadata.name`, when there is one.
        name: Option<String>,
    },
    /// An RBAC object with a missing, mistyped or invalid field.
    #[error("RBAC file, {at}: {kind} {name:?}: field `{field}`: {message}")]
    InvalidField {
        /// Where.
        at: Location,
        /// Kind of the object.
        kind: String,
        /// `metadata.name` of the object (empty when missing).
        name: String,
        /// Field path, e.g. `rules[0].verbs`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn named(name: &Option<String>) -> String {
    match name {
        Some(n) => format!(" (named {n:?})"),
        None => String::new(),
    }
}
