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
}
