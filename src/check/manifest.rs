//! Reading manifests as kubectl reads them: repeatable `-f` (files, directories walked for
//! `.yaml`/`.yml`/`.json`, `-` for stdin), multi-document streams, `kind: List`; duplicate
//! keys are an error, merge keys `<<` are applied, `.nan`/`.inf` are refused.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// One object read from the input, with where it came from (`file#document`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    pub source: String,
    pub object: Value,
}

/// Why the input could not be read; every variant names the file and what to do.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the input is larger than {max} bytes (--max-input-bytes, env TETHER_MAX_INPUT_BYTES); raise the limit or split the input")]
    TooLarge { max: usize },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error(
        "no objects in the input ({what}); pass manifests with -f FILE, -f DIR or -f - (stdin)"
    )]
    Empty { what: String },
}

/// The files `-f` names: a file as given, a directory walked recursively (sorted, only
/// `.yaml`, `.yml` and `.json`), `-` as stdin.
pub fn expand(paths: &[String]) -> Result<Vec<String>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            out.push(p.clone());
            continue;
        }
        let path = Path::new(p);
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).map_err(|e| InputError::Read {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            found.sort();
            out.extend(found.into_iter().map(|f| f.display().to_string()));
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // file_type() does not follow symlinks: a link cycle cannot loop the walk.
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every file (at most `max` bytes in all) and splits it into objects.
pub fn read_all(paths: &[String], max: usize) -> Result<Vec<Sourced>, InputError> {
    let files = expand(paths)?;
    let mut budget = max;
    let mut out = Vec::new();
    for f in &files {
        let limit = budget as u64 + 1;
        let mut body = Vec::new();
        let res = if f == "-" {
            std::io::stdin().lock().take(limit).read_to_end(&mut body)
        } else {
            std::fs::File::open(f).and_then(|h| h.take(limit).read_to_end(&mut body))
        };
        res.map_err(|e| InputError::Read {
            path: display(f),
            reason: e.to_string(),
        })?;
        if body.len() > budget {
            return Err(InputError::TooLarge { max });
        }
        budget -= body.len();
        let text = String::from_utf8(body).map_err(|e| InputError::Parse {
            path: display(f),
            reason: format!("not UTF-8 text ({e})"),
        })?;
        for (doc, object) in parse_manifest(&text).map_err(|reason| InputError::Parse {
            path: display(f),
            reason,
        })? {
            out.push(Sourced {
                source: format!("{}#{doc}", display(f)),
                object,
            });
        }
    }
    if out.is_empty() {
        return Err(InputError::Empty {
            what: files
                .iter()
                .map(|f| display(f))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(out)
}

fn display(f: &str) -> String {
    if f == "-" {
        "<stdin>".into()
    } else {
        f.to_string()
    }
}

/// Splits a manifest into `(document number, object)`; `List` items keep their document's
/// number.
pub fn parse_manifest(text: &str) -> Result<Vec<(usize, Value)>, String> {
    // The YAML parser is quadratic in flow nesting depth: refuse deep input in linear time.
    crate::budget::yaml_flow_depth(text, crate::budget::MAX_YAML_DEPTH)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let mut y =
            serde_yaml_ng::Value::deserialize(doc).map_err(|e| format!("document {n}: {e}"))?;
        y.apply_merge().map_err(|e| format!("document {n}: {e}"))?;
        let v = to_json(&y, "").map_err(|e| format!("document {n}: {e}"))?;
        match v {
            Value::Null => continue,
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                match m.get("items") {
                    Some(Value::Array(items)) => {
                        for (j, item) in items.iter().enumerate() {
                            if !item.is_object() {
                                return Err(format!(
                                    "document {n}: items[{j}]: expected a Kubernetes object (a mapping)"
                                ));
                            }
                            out.push((n, item.clone()));
                        }
                    }
                    None | Some(Value::Null) => {}
                    Some(_) => return Err(format!("document {n}: items: expected a list")),
                }
            }
            Value::Object(_) => out.push((n, v)),
            other => {
                return Err(format!(
                    "document {n}: expected a Kubernetes object (a mapping), found {}",
                    match other {
                        Value::Array(_) => "a list",
                        Value::String(_) => "a string",
                        _ => "a scalar",
                    }
                ))
            }
        }
    }
    Ok(out)
}

/// YAML to JSON as sigs.k8s.io/yaml converts it: scalar keys become strings, numbers that
/// JSON cannot hold (`.nan`, `.inf`) are refused.
fn to_json(y: &serde_yaml_ng::Value, at: &str) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    let here = |at: &str| {
        if at.is_empty() {
            "the document".to_string()
        } else {
            at.to_string()
        }
    };
    Ok(match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => {
                        return Err(format!(
                            "{}: {f} is not a number JSON can hold (.nan and .inf are refused, as by the API server); quote it if it is meant as a string",
                            here(at)
                        ))
                    }
                }
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".into(),
                    _ => {
                        return Err(format!(
                            "{}: a mapping key must be a scalar, not a list or mapping",
                            here(at)
                        ))
                    }
                };
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                let value = to_json(v, &path)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => to_json(&t.value, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objs(text: &str) -> Result<Vec<Value>, String> {
        parse_manifest(text).map(|v| v.into_iter().map(|(_, o)| o).collect())
    }

    #[test]
    fn multi_documents_and_lists() {
        let o = objs("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n").unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1]["kind"], "Secret");
        assert_eq!(
            objs("- a\n- b\n").unwrap_err(),
            "document 1: expected a Kubernetes object (a mapping), found a list"
        );
        assert!(objs("a: [").unwrap_err().starts_with("document 1: "));
    }

    #[test]
    fn yaml_is_read_as_kubectl_reads_it() {
        let e = objs("kind: ConfigMap\ndata: {a: 1, a: 2}\n").unwrap_err();
        assert!(e.contains("duplicate entry with key \"a\""), "{e}");
        let e = objs("kind: ConfigMap\nmetadata:\n  name: x\n  name: y\n").unwrap_err();
        assert!(
            e.starts_with("document 1: ") && e.contains("duplicate"),
            "{e}"
        );
        assert_eq!(
            objs("base: &b {x: 1, y: 2}\nkind: K\nspec:\n  <<: *b\n  y: 3\n").unwrap()[0]["spec"],
            json!({"x": 1, "y": 3})
        );
        for bad in [".nan", ".inf", "-.inf"] {
            let e = objs(&format!("kind: K\nspec:\n  replicas: {bad}\n")).unwrap_err();
            assert!(e.starts_with("document 1: spec.replicas: "), "{e}");
            assert!(e.contains(".nan and .inf are refused"), "{e}");
        }
        assert_eq!(
            objs("kind: K\ndata: {1: a, true: b}\n").unwrap()[0]["data"],
            json!({"1": "a", "true": "b"})
        );
    }
}
