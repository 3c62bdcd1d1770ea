//! Object name validation as upstream does it, with its exact messages.

use super::registry::NameRule;
use super::status::Cause;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// DNS-1123 label: at most 63 characters.
pub fn is_dns1123_label(text: &str) -> bool {
    text.len() <= 63 && is_label(text)
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_label)
}

fn is_dns1035_label(text: &str) -> bool {
    is_dns1123_label(text) && text.as_bytes()[0].is_ascii_lowercase()
}

/// Problems with `name` under `rule`, reported at `field`.
pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let too_long = |max: usize| format!("must be no more than {max} characters");
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                causes.push(Cause::invalid(field, name, &too_long(253)));
            } else if !is_dns1123_subdomain(name) {
                causes.push(Cause::invalid(field, name, SUBDOMAIN_MSG));
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                causes.push(Cause::invalid(field, name, &too_long(63)));
            } else if !is_label(name) {
                causes.push(Cause::invalid(field, name, LABEL_MSG));
            }
        }
        NameRule::Dns1035Label => {
            if name.len() > 63 {
                causes.push(Cause::invalid(field, name, &too_long(63)));
            } else if !is_dns1035_label(name) {
                causes.push(Cause::invalid(field, name, DNS1035_MSG));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                causes.push(Cause::invalid(field, name, &format!("may not be '{name}'")));
            } else if let Some(bad) = ["/", "%"].iter().find(|s| name.contains(**s)) {
                causes.push(Cause::invalid(
                    field,
                    name,
                    &format!("may not contain '{bad}'"),
                ));
            }
        }
    }
    causes
}

const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label or annotation key (`prefix/name`, prefix a DNS subdomain).
fn validate_qualified_name(key: &str, field: &str) -> Vec<Cause> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let mut causes = Vec::new();
    if !is_name_part(name) {
        causes.push(Cause::invalid(field, key, NAME_PART_MSG));
    }
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        causes.push(Cause::invalid(
            field,
            key,
            &format!("prefix part {SUBDOMAIN_MSG}"),
        ));
    }
    causes
}

/// Problems with an object's label and annotation keys and label values.
pub fn validate_metadata(object: &serde_json::Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let metadata = object.get("metadata");
    if let Some(labels) = metadata
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.as_object())
    {
        for (key, value) in labels {
            causes.extend(validate_qualified_name(key, "metadata.labels"));
            match value.as_str() {
                Some(v) if v.is_empty() || is_name_part(v) => {}
                Some(v) => causes.push(Cause::invalid("metadata.labels", v, LABEL_VALUE_MSG)),
                None => causes.push(Cause::invalid(
                    "metadata.labels",
                    &value.to_string(),
                    "must be a string",
                )),
            }
        }
    }
    if let Some(annotations) = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.as_object())
    {
        for (key, value) in annotations {
            causes.extend(validate_qualified_name(key, "metadata.annotations"));
            if !value.is_string() {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    &value.to_string(),
                    "must be a string",
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name(NameRule::Subdomain, "a.b-c", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "Bad_Name", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::Label, "a.b", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::Dns1035Label, "1abc", "metadata.name").is_empty());
        assert!(validate_name(NameRule::Dns1035Label, "abc-1", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::PathSegment, "a/b", "metadata.name").is_empty());
        let cause = &validate_name(NameRule::Subdomain, "X", "metadata.name")[0];
        assert!(
            cause
                .message
                .starts_with("Invalid value: \"X\": a lowercase RFC 1123 subdomain")
        );
    }

    #[test]
    fn labels_and_annotations() {
        let ok = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "web", "x": ""}, "annotations": {"a/b": "anything at all"}}});
        assert!(validate_metadata(&ok).is_empty());
        let bad = serde_json::json!({"metadata": {"labels": {"bad key": "v", "k": "bad value", "Bad_Prefix/x": "v"}, "annotations": {"n": 1}}});
        let fields: Vec<String> = validate_metadata(&bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields.len(), 4);
        assert!(fields.iter().all(|f| f.starts_with("metadata.")));
    }
}
