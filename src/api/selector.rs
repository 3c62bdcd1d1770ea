//! Label and field selectors in their query-string syntax
//! (`app=web,tier!=db,env in (a,b),!legacy`, `spec.nodeName=,status.phase!=Failed`).

use crate::query::go_quote;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    /// A field selector upstream's `fields.ParseSelector` cannot read, in its words.
    #[error("{0}")]
    FieldSyntax(String),
    /// apimachinery's default conversion, for kinds without field labels of their own.
    #[error("{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"", go_quote(.0))]
    UnknownField(String),
    /// A kind with field labels of its own rejects others with its conversion
    /// function's shorter message, as upstream's built-in kinds do.
    #[error("field label not supported: {0}")]
    NotSupported(String),
    /// The conversion functions that name their kind (batch/v1 Job's).
    #[error("field label {} not supported for {kind}", go_quote(.label))]
    NotSupportedFor { label: String, kind: &'static str },
    /// The conversion functions that name their group, version and kind
    /// (resource.k8s.io's).
    #[error("field label not supported for {gvk}: {label}")]
    NotSupportedForGvk { label: String, gvk: &'static str },
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

/// Which metadata labels a kind's field selectors take and how other labels are
/// refused: upstream's per-kind field-label conversion function
/// (`AddFieldLabelConversionFunc` in `pkg/apis/<group>/<version>/conversion.go`), or
/// apimachinery's `DefaultMetaV1FieldSelectorConversion` for kinds without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldLabels {
    /// No conversion function: `metadata.name` and `metadata.namespace` whatever the
    /// kind's scope, others refused as `"x" is not a known field selector: only …`.
    Default,
    /// A conversion function (core kinds with fields of their own, events.k8s.io
    /// Events, custom resources): `metadata.name`, `metadata.namespace` for namespaced
    /// kinds only, others refused as `field label not supported: x`.
    Converted,
    /// A conversion function that names its kind in the refusal (batch/v1 Job's:
    /// `field label "x" not supported for Job`).
    ConvertedFor(&'static str),
    /// A conversion function that names its group, version and kind as Go prints a
    /// GroupVersionKind (resource.k8s.io/v1 ResourceSlice's: `field label not supported
    /// for resource.k8s.io/v1, Kind=ResourceSlice: x`).
    ConvertedForGvk(&'static str),
}

/// What a kind's field selectors may name and how each label reads its object.
#[derive(Clone, Copy, Debug)]
pub struct FieldLabelRules<'a> {
    pub labels: FieldLabels,
    pub namespaced: bool,
    /// Labels beyond `metadata.name` and `metadata.namespace`.
    pub selectable: &'a [&'a str],
    /// The labels whose unset value is not `""`, with the value they compare as then.
    pub zero_values: &'a [(&'a str, &'static str)],
    /// The labels read elsewhere than at their own path: the paths read instead, the
    /// first set and non-empty one winning; none at all for a label upstream accepts
    /// but never fills in (a Pod's `status.podIPs`), which is always `""`.
    pub reads: &'a [(&'a str, &'static [&'static str])],
}

impl FieldLabelRules<'_> {
    /// The label as the kind's conversion function lets it through, or its refusal.
    fn admit(&self, label: &str) -> Result<(), SelectorError> {
        let metadata = label == "metadata.name"
            || (label == "metadata.namespace"
                && (self.namespaced || self.labels == FieldLabels::Default));
        if metadata || self.selectable.contains(&label) {
            return Ok(());
        }
        Err(match self.labels {
            FieldLabels::Default => SelectorError::UnknownField(label.to_string()),
            FieldLabels::Converted => SelectorError::NotSupported(label.to_string()),
            FieldLabels::ConvertedFor(kind) => SelectorError::NotSupportedFor {
                label: label.to_string(),
                kind,
            },
            FieldLabels::ConvertedForGvk(gvk) => SelectorError::NotSupportedForGvk {
                label: label.to_string(),
                gvk,
            },
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
    /// Where the value is read when not at `path` (see `FieldLabelRules::reads`).
    reads: Option<&'static [&'static str]>,
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Upstream's `splitTerms`: splits on commas not escaped by a backslash, keeping the
/// escapes for `unescape_value`.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Upstream's `splitTerm`: the label (never unescaped, never trimmed) ends at the first
/// position where `!=`, `==` or `=` starts, tried in that order.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, equal) in [("!=", false), ("==", true), ("=", true)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], equal, value));
            }
        }
    }
    None
}

/// Upstream's `UnescapeValue`: `\\`, `\,` and `\=` are the only escapes, and a bare
/// `,` or `=` may not appear in a value.
fn unescape_value(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune with `%v`: its code point.
            ',' | '=' => {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if escaped {
        return Err(SelectorError::FieldSyntax(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `text` as upstream's `fields.ParseSelector` does, then passes each label
    /// through the kind's conversion (`rules`). Upstream sorts the terms before either
    /// step, so of several bad labels the first in that order is the one reported, and
    /// any syntax error wins over every label error.
    pub fn parse(text: &str, rules: &FieldLabelRules) -> Result<Self, SelectorError> {
        Self::parse_with(text, Some(rules))
    }

    /// Parses `text` without a kind's conversion, taking every label as it stands:
    /// what upstream's request-info resolver reads a list's name from.
    pub fn parse_unchecked(text: &str) -> Result<Self, SelectorError> {
        Self::parse_with(text, None)
    }

    fn parse_with(text: &str, rules: Option<&FieldLabelRules>) -> Result<Self, SelectorError> {
        let mut terms = split_terms(text);
        terms.sort_unstable();
        let mut parsed = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let (label, equal, value) = split_term(term).ok_or_else(|| {
                SelectorError::FieldSyntax(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ))
            })?;
            parsed.push((label, equal, unescape_value(value)?));
        }
        let mut requirements = Vec::new();
        for (label, equal, value) in parsed {
            let (mut zero, mut reads) = ("", None);
            if let Some(rules) = rules {
                rules.admit(label)?;
                zero = rules
                    .zero_values
                    .iter()
                    .find(|(field, _)| *field == label)
                    .map_or("", |(_, zero)| *zero);
                reads = rules
                    .reads
                    .iter()
                    .find(|(field, _)| *field == label)
                    .map(|(_, paths)| *paths);
            }
            requirements.push(FieldRequirement {
                path: label.to_string(),
                value,
                equal,
                zero,
                reads,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The selector `label=value`, which every kind's field labels admit for
    /// `metadata.name`.
    pub fn exact(label: &str, value: &str) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                path: label.to_string(),
                value: value.to_string(),
                equal: true,
                zero: "",
                reads: None,
            }],
        }
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

    /// The value `label` must equal, when one of the terms says so (upstream's
    /// `RequiresExactMatch`).
    pub fn requires_exact(&self, label: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|req| req.equal && req.path == label)
            .map(|req| req.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
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
/// upstream's typed objects cannot tell from the zero value. A numeric segment indexes
/// a list (`status.podIPs.0.ip`).
fn field_value(object: &Value, path: &str) -> Option<String> {
    let mut cur = object;
    for part in path.split('.') {
        cur = match cur {
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            other => other.get(part)?,
        };
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

    fn rules<'a>(
        selectable: &'a [&'a str],
        zero_values: &'a [(&'a str, &'static str)],
        reads: &'a [(&'a str, &'static [&'static str])],
    ) -> FieldLabelRules<'a> {
        FieldLabelRules {
            labels: FieldLabels::Converted,
            namespaced: true,
            selectable,
            zero_values,
            reads,
        }
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}, "status": {"phase": "Pending"}});
        let allowed = rules(&["spec.nodeName", "status.phase"], &[], &[]);
        let sel = |s: &str| FieldSelector::parse(s, &allowed).unwrap();
        assert!(sel("spec.nodeName=").matches(&pod));
        assert!(!sel("spec.nodeName!=").matches(&pod));
        assert!(sel("metadata.name=p,metadata.namespace==ns").matches(&pod));
        assert!(sel("status.phase!=Running").matches(&pod));
        assert!(sel("").matches(&pod));
        assert!(sel(",,").matches(&pod));
        let escaped = sel(r"metadata.name=a\,b\=c\\d");
        assert!(escaped.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        assert_eq!(escaped.requires_exact("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(
            sel("metadata.name!=x").requires_exact("metadata.name"),
            None
        );
    }

    #[test]
    fn field_labels_are_refused_in_each_conversions_words() {
        let err = |labels, namespaced, text: &str| {
            let rules = FieldLabelRules {
                labels,
                namespaced,
                selectable: &["spec.nodeName"],
                zero_values: &[],
                reads: &[],
            };
            FieldSelector::parse(text, &rules).unwrap_err().to_string()
        };
        assert_eq!(
            err(FieldLabels::Converted, true, "spec.foo=x"),
            "field label not supported: spec.foo"
        );
        // Labels are neither trimmed nor unescaped.
        assert_eq!(
            err(FieldLabels::Converted, true, " spec.nodeName=x"),
            "field label not supported:  spec.nodeName"
        );
        // A cluster-scoped kind's conversion takes no namespace...
        assert_eq!(
            err(FieldLabels::Converted, false, "metadata.namespace=x"),
            "field label not supported: metadata.namespace"
        );
        // ...apimachinery's default takes it whatever the scope.
        let rules = FieldLabelRules {
            labels: FieldLabels::Default,
            namespaced: false,
            selectable: &[],
            zero_values: &[],
            reads: &[],
        };
        assert!(FieldSelector::parse("metadata.namespace=x", &rules).is_ok());
        assert_eq!(
            FieldSelector::parse("data.x=y", &rules)
                .unwrap_err()
                .to_string(),
            r#""data.x" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        assert_eq!(
            err(FieldLabels::ConvertedFor("Job"), true, "spec.foo=x"),
            r#"field label "spec.foo" not supported for Job"#
        );
        assert_eq!(
            err(
                FieldLabels::ConvertedForGvk("resource.k8s.io/v1, Kind=ResourceSlice"),
                false,
                "spec.pool=x"
            ),
            "field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: spec.pool"
        );
        // Terms are sorted before they are checked: the first bad one in that order.
        assert_eq!(
            err(FieldLabels::Converted, true, "zzz=1,aaa=2"),
            "field label not supported: aaa"
        );
    }

    #[test]
    fn field_syntax_errors_are_upstreams() {
        let allowed = rules(&["spec.nodeName"], &[], &[]);
        let err = |text: &str| {
            FieldSelector::parse(text, &allowed)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("nonsense"),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        assert_eq!(
            err("metadata.name=a=b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            err(r"metadata.name=a\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            err(r"metadata.name=a\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        // A syntax error anywhere wins over a bad label sorted before it.
        assert_eq!(
            err("aaa=1,zzz"),
            "invalid selector: 'aaa=1,zzz'; can't understand 'zzz'"
        );
        // `!=` is found before `=` at the same position; `=!` is `=` then a value.
        let ne = FieldSelector::parse("spec.nodeName!=n1", &allowed).unwrap();
        assert!(ne.matches(&json!({"spec": {"nodeName": "n2"}})));
        let eq = FieldSelector::parse("spec.nodeName=!n1", &allowed).unwrap();
        assert!(eq.matches(&json!({"spec": {"nodeName": "!n1"}})));
    }

    #[test]
    fn unset_fields_compare_as_their_zero_value() {
        let allowed = rules(
            &["spec.unschedulable"],
            &[("spec.unschedulable", "false")],
            &[],
        );
        let sel = |s: &str| FieldSelector::parse(s, &allowed).unwrap();
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
            ("status.podIP", &["status.podIPs.0.ip"]),
            ("status.podIPs", &[]),
        ];
        let allowed = rules(
            &[
                "source",
                "status.successful",
                "status.podIP",
                "status.podIPs",
            ],
            &[("status.successful", "0")],
            reads,
        );
        let sel = |s: &str| FieldSelector::parse(s, &allowed).unwrap();
        let kubelet = json!({"source": {"component": "kubelet", "host": "n1"}});
        assert!(sel("source=kubelet").matches(&kubelet));
        let reported = json!({"source": {"component": ""}, "reportingComponent": "ctl"});
        assert!(sel("source=ctl").matches(&reported));
        assert!(sel("source=").matches(&json!({})));
        assert!(sel("status.successful=1").matches(&json!({"status": {"succeeded": 1}})));
        assert!(sel("status.successful=0").matches(&json!({"status": {}})));
        let pod = json!({"status": {"podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}]}});
        assert!(sel("status.podIP=10.0.0.9").matches(&pod));
        // Accepted, but upstream's field set never fills it in.
        assert!(!sel("status.podIPs=10.0.0.9").matches(&pod));
        assert!(sel("status.podIPs=").matches(&pod));
        let both = sel("source=x,status.successful=1");
        let paths: Vec<&str> = both.paths().collect();
        assert_eq!(
            paths,
            ["source.component", "reportingComponent", "status.succeeded"]
        );
    }
}
