//! `additionalPrinterColumns`: the Table columns of a custom resource, each a simple
//! JSONPath into the object, formatted by the column's type (`date` becomes an age
//! like `5m`, as upstream's server-side printing does).

use super::PrinterColumn;
use crate::meta::age;
use serde_json::{Value, json};

/// One step of a JSONPath as CRDs use them: `.field`, `[n]`, `[*]`, `[?(@.k=="v")]`.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, String),
}

/// Parses `.status.conditions[?(@.type=="Ready")].status`; `None` when malformed.
fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    if rest.is_empty() {
        return Some(steps);
    }
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let body = &inner[..end];
            rest = &inner[end + 1..];
            steps.push(parse_bracket(body)?);
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty() {
                return None;
            }
            steps.push(Step::Field(name.to_string()));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(steps)
}

fn parse_bracket(body: &str) -> Option<Step> {
    if body == "*" {
        return Some(Step::All);
    }
    if let Ok(index) = body.parse::<usize>() {
        return Some(Step::Index(index));
    }
    if let Some(quoted) = body
        .strip_prefix('\'')
        .and_then(|b| b.strip_suffix('\''))
        .or_else(|| body.strip_prefix('"').and_then(|b| b.strip_suffix('"')))
    {
        return Some(Step::Field(quoted.to_string()));
    }
    let filter = body.strip_prefix("?(@.")?.strip_suffix(')')?;
    let (field, wanted) = filter.split_once("==")?;
    let wanted = wanted.trim().trim_matches(['"', '\'']).to_string();
    let field = field.trim().split('.').map(str::to_string).collect();
    Some(Step::Filter(field, wanted))
}

/// Every value the path selects in `object`, in document order.
pub fn evaluate<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut current = vec![object];
    for step in &steps {
        let mut next = Vec::new();
        for value in current {
            match step {
                Step::Field(name) => next.extend(value.get(name.as_str())),
                Step::Index(i) => next.extend(value.get(*i)),
                Step::All => match value {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => next.extend(map.values()),
                    _ => {}
                },
                Step::Filter(field, wanted) => {
                    for item in value.as_array().into_iter().flatten() {
                        let mut found = Some(item);
                        for part in field {
                            found = found.and_then(|f| f.get(part.as_str()));
                        }
                        let matches = match found {
                            Some(Value::String(s)) => s == wanted,
                            // `@.ready==true`, `@.count==3`: compare as JSON.
                            Some(other) => {
                                serde_json::from_str::<Value>(wanted).ok().as_ref() == Some(other)
                            }
                            None => false,
                        };
                        if matches {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// The cell of `column` for `object`: null (kubectl prints `<none>`) when absent.
pub fn cell(column: &PrinterColumn, object: &Value) -> Value {
    let found = evaluate(object, &column.json_path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "date" => match first.as_str() {
            Some(text) => json!(age(Some(text))),
            None => Value::Null,
        },
        "integer" if first.is_i64() || first.is_u64() => (*first).clone(),
        "number" if first.is_number() => (*first).clone(),
        "boolean" if first.is_boolean() => (*first).clone(),
        _ if found.len() > 1 => {
            let parts: Vec<String> = found.iter().map(|v| plain(v)).collect();
            json!(parts.join(","))
        }
        _ => json!(plain(first)),
    }
}

/// A value as text: strings bare, everything else as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: &str, path: &str) -> PrinterColumn {
        PrinterColumn {
            name: "C".into(),
            kind: kind.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        }
    }

    #[test]
    fn paths_select_fields_items_and_filters() {
        let object = json!({
            "spec": {"replicas": 3, "image": "nginx", "tags": ["a", "b"]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        assert_eq!(cell(&column("integer", ".spec.replicas"), &object), 3);
        assert_eq!(cell(&column("string", ".spec.image"), &object), "nginx");
        assert_eq!(cell(&column("string", ".spec.tags[1]"), &object), "b");
        assert_eq!(cell(&column("string", ".spec.tags[*]"), &object), "a,b");
        assert_eq!(
            cell(
                &column("string", ".status.conditions[?(@.type==\"Ready\")].status"),
                &object
            ),
            "True"
        );
        assert_eq!(
            cell(&column("string", ".spec.missing"), &object),
            Value::Null
        );
        assert_eq!(cell(&column("string", ".spec.replicas"), &object), "3");
    }

    #[test]
    fn dates_become_ages() {
        let object = json!({"metadata": {"creationTimestamp": "2000-01-01T00:00:00Z"}});
        let text = cell(&column("date", ".metadata.creationTimestamp"), &object);
        assert!(text.as_str().is_some_and(|t| t.ends_with('y')), "{text}");
    }
}
