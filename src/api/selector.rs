//! Label and field selectors in their query-string syntax
//! (`app=web,tier!=db,env in (a,b),!legacy`, `spec.nodeName=,status.phase!=Failed`).

use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    #[error("{field:?} is not a known field selector: only {allowed}")]
    UnknownField { field: String, allowed: String },
    /// A kind with field labels of its own rejects others with its conversion
    /// function's shorter message, as upstream's built-in kinds do.
    #[error("field label not supported: {0}")]
    NotSupported(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

/// A parsed label selector; every requirement must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// A cursor over the selector text that skips blanks between tokens.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_blanks(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_blanks();
        self.text[self.pos..].chars().next()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_blanks();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &'a str {
        self.skip_blanks();
        let start = self.pos;
        while let Some(c) = self.text[self.pos..].chars().next() {
            if !is_key_char(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.text[start..self.pos]
    }

    /// `in`/`notin` are operators only when followed by blanks or `(`.
    fn keyword(&mut self, keyword: &str) -> bool {
        self.skip_blanks();
        let rest = &self.text[self.pos..];
        if let Some(after) = rest.strip_prefix(keyword)
            && after.trim_start().starts_with('(')
        {
            self.pos += keyword.len();
            return true;
        }
        false
    }
}

impl LabelSelector {
    /// True for the selector that selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        let mut scan = Scanner { text, pos: 0 };
        if scan.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(Self::requirement(&mut scan, text)?);
            match scan.peek() {
                None => break,
                Some(',') => {
                    scan.pos += 1;
                }
                Some(_) => return Err(SelectorError::Syntax(text.to_string())),
            }
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(scan: &mut Scanner, text: &str) -> Result<LabelRequirement, SelectorError> {
        let syntax = || SelectorError::Syntax(text.to_string());
        if scan.eat("!") {
            let key = scan.word();
            if key.is_empty() {
                return Err(syntax());
            }
            return Ok(LabelRequirement {
                key: key.to_string(),
                op: LabelOp::DoesNotExist,
            });
        }
        let key = scan.word().to_string();
        if key.is_empty() {
            return Err(syntax());
        }
        let op = if scan.eat("==") || scan.eat("=") {
            LabelOp::Equals(scan.word().to_string())
        } else if scan.eat("!=") {
            LabelOp::NotEquals(scan.word().to_string())
        } else if scan.keyword("notin") {
            LabelOp::NotIn(Self::value_set(scan).ok_or_else(syntax)?)
        } else if scan.keyword("in") {
            LabelOp::In(Self::value_set(scan).ok_or_else(syntax)?)
        } else {
            LabelOp::Exists
        };
        Ok(LabelRequirement { key, op })
    }

    fn value_set(scan: &mut Scanner) -> Option<BTreeSet<String>> {
        if !scan.eat("(") {
            return None;
        }
        let mut values = BTreeSet::new();
        loop {
            values.insert(scan.word().to_string());
            if scan.eat(")") {
                return Some(values);
            }
            if !scan.eat(",") {
                return None;
            }
        }
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|req| {
            let value = labels.and_then(|l| l.get(&req.key)).and_then(Value::as_str);
            match &req.op {
                LabelOp::Equals(v) => value == Some(v.as_str()),
                LabelOp::NotEquals(v) => value != Some(v.as_str()),
                LabelOp::In(set) => value.is_some_and(|v| set.contains(v)),
                LabelOp::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    path: String,
    value: String,
    equal: bool,
    /// What the field compares as when unset or null.
    zero: &'static str,
    /// Where the value is read when not at `path` (see `Resource::selectable_reads`).
    reads: Option<&'static [&'static str]>,
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Splits on unescaped `sep`, keeping escapes for the next stage.
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses `text`, accepting only `metadata.name`, `metadata.namespace` and `allowed`;
    /// `zero_values` are the unset values of allowed fields that are not `""`, `reads`
    /// the paths of those read elsewhere than their label says.
    pub fn parse(
        text: &str,
        allowed: &[&str],
        zero_values: &[(&str, &'static str)],
        reads: &[(&str, &'static [&'static str])],
    ) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_unescaped(text, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (path, value, equal) = if let Some((p, v)) = part.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, v, true)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, v, true)
            } else {
                return Err(SelectorError::Syntax(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let path = path.trim().to_string();
            if path != "metadata.name"
                && path != "metadata.namespace"
                && !allowed.contains(&path.as_str())
            {
                if !allowed.is_empty() {
                    return Err(SelectorError::NotSupported(path));
                }
                // apimachinery's default conversion, for kinds without field labels.
                return Err(SelectorError::UnknownField {
                    field: path,
                    allowed: "\"metadata.name\", \"metadata.namespace\"".to_string(),
                });
            }
            let zero = zero_values
                .iter()
                .find(|(field, _)| *field == path)
                .map_or("", |(_, zero)| *zero);
            let reads = reads
                .iter()
                .find(|(field, _)| *field == path)
                .map(|(_, paths)| *paths);
            requirements.push(FieldRequirement {
                path,
                value: unescape(value),
                equal,
                zero,
                reads,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The field paths the selector reads (`spec.nodeName`, …).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().flat_map(|req| {
            let (own, elsewhere) = match req.reads {
                Some(paths) => (None, paths),
                None => (Some(req.path.as_str()), &[][..]),
            };
            own.into_iter().chain(elsewhere.iter().copied())
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|req| {
            let actual = match req.reads {
                Some(paths) => paths
                    .iter()
                    .filter_map(|path| field_value(object, path))
                    .find(|value| !value.is_empty()),
                None => field_value(object, &req.path),
            };
            let actual = actual.unwrap_or_else(|| req.zero.to_string());
            (actual == req.value) == req.equal
        })
    }
}

/// A field's value as a selector compares it, booleans and numbers in their JSON
/// spelling (upstream's field sets are strings too); `None` when unset or null, which
/// upstream's typed objects cannot tell from the zero value.
fn field_value(object: &Value, path: &str) -> Option<String> {
    let mut cur = object;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_operators() {
        let l = labels(json!({"app": "web", "tier": "fe", "env": "prod"}));
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(ok("app=web"));
        assert!(ok("app==web"));
        assert!(!ok("app!=web"));
        assert!(ok("missing!=x"));
        assert!(ok("env in (prod, dev)"));
        assert!(!ok("env notin (prod,dev)"));
        assert!(ok("missing notin (a)"));
        assert!(ok("tier"));
        assert!(!ok("!tier"));
        assert!(ok("!nope,app=web , tier in (fe)"));
        assert!(ok(""));
        assert!(!LabelSelector::parse("a=b").unwrap().matches(None));
    }

    #[test]
    fn label_syntax_errors() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b,,c").is_err());
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("=b").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}, "status": {"phase": "Pending"}});
        let allowed = &["spec.nodeName", "status.phase"];
        let sel = |s: &str| FieldSelector::parse(s, allowed, &[], &[]).unwrap();
        assert!(sel("spec.nodeName=").matches(&pod));
        assert!(!sel("spec.nodeName!=").matches(&pod));
        assert!(sel("metadata.name=p,metadata.namespace==ns").matches(&pod));
        assert!(sel("status.phase!=Running").matches(&pod));
        let err = FieldSelector::parse("spec.foo=x", allowed, &[], &[]).unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.foo");
        let err = FieldSelector::parse("data.x=y", &[], &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(FieldSelector::parse("nonsense", allowed, &[], &[]).is_err());
        let escaped = FieldSelector::parse(r"metadata.name=a\,b", allowed, &[], &[]).unwrap();
        assert!(escaped.matches(&json!({"metadata": {"name": "a,b"}})));
    }

    #[test]
    fn unset_fields_compare_as_their_zero_value() {
        let allowed = &["spec.unschedulable"];
        let zeros = &[("spec.unschedulable", "false")];
        let sel = |s: &str| FieldSelector::parse(s, allowed, zeros, &[]).unwrap();
        let fresh = json!({"metadata": {"name": "n"}, "spec": {}});
        assert!(sel("spec.unschedulable=false").matches(&fresh));
        assert!(!sel("spec.unschedulable=true").matches(&fresh));
        assert!(!sel("spec.unschedulable=").matches(&fresh));
        assert!(sel("spec.unschedulable=false").matches(&json!({"spec": {"unschedulable": null}})));
        let cordoned = json!({"spec": {"unschedulable": true}});
        assert!(sel("spec.unschedulable=true").matches(&cordoned));
        assert!(sel("spec.unschedulable!=false").matches(&cordoned));
    }

    #[test]
    fn labels_read_where_upstream_reads_them() {
        let reads: &[(&str, &'static [&'static str])] = &[
            ("source", &["source.component", "reportingComponent"]),
            ("status.successful", &["status.succeeded"]),
        ];
        let allowed = &["source", "status.successful"];
        let zeros = &[("status.successful", "0")];
        let sel = |s: &str| FieldSelector::parse(s, allowed, zeros, reads).unwrap();
        let kubelet = json!({"source": {"component": "kubelet", "host": "n1"}});
        assert!(sel("source=kubelet").matches(&kubelet));
        let reported = json!({"source": {"component": ""}, "reportingComponent": "ctl"});
        assert!(sel("source=ctl").matches(&reported));
        assert!(sel("source=").matches(&json!({})));
        assert!(sel("status.successful=1").matches(&json!({"status": {"succeeded": 1}})));
        assert!(sel("status.successful=0").matches(&json!({"status": {}})));
        let both = sel("source=x,status.successful=1");
        let paths: Vec<&str> = both.paths().collect();
        assert_eq!(
            paths,
            ["source.component", "reportingComponent", "status.succeeded"]
        );
    }
}
