//! Where each field of a YAML document sits, so errors found after parsing (a value
//! rind refuses, a kubeadm patch field it cannot apply) still name the line, as a parse
//! error does. The config types stay plain structs; this is a second, position-only
//! reading of the same text.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node with the position of every map key and sequence item under it.
#[derive(Debug, Default)]
pub struct Located {
    entries: Vec<(String, u64, Located)>,
    items: Vec<(u64, Located)>,
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TreeVisitor;
        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = Located;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
                let mut tree = Located::default();
                while let Some((key, value)) =
                    map.next_entry::<Spanned<KeyText>, Spanned<Located>>()?
                {
                    tree.entries
                        .push((key.value.0, key.referenced.line(), value.value));
                }
                Ok(tree)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
                let mut tree = Located::default();
                while let Some(item) = seq.next_element::<Spanned<Located>>()? {
                    tree.items.push((item.referenced.line(), item.value));
                }
                Ok(tree)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_unit<E>(self) -> Result<Located, E> {
                Ok(Located::default())
            }
            fn visit_none<E>(self) -> Result<Located, E> {
                Ok(Located::default())
            }
        }
        deserializer.deserialize_any(TreeVisitor)
    }
}

/// A map key of any scalar type, as text (YAML allows `80: x` as well as `a: x`).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar map key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// One step of a field path: a map key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Splits `nodes[0].extraMounts[1].hostPath` into its steps. Keys holding dots (a
/// feature gate, a runtimeConfig group like `apps/v1`) are written `featureGates."a.b"`.
pub fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        rest = rest.trim_start_matches('.');
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').unwrap_or(inner.len());
            if let Ok(index) = inner[..end].parse() {
                out.push(Step::Index(index));
            }
            rest = inner.get(end + 1..).unwrap_or("");
        } else if let Some(inner) = rest.strip_prefix('"') {
            let end = inner.find('"').unwrap_or(inner.len());
            out.push(Step::Key(inner[..end].to_string()));
            rest = inner.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end > 0 {
                out.push(Step::Key(rest[..end].to_string()));
            }
            rest = &rest[end..];
        }
    }
    out
}

impl Located {
    /// Reads the positions of a document; None when it is not YAML (the real parse
    /// reports that).
    pub fn read(text: &str) -> Option<Located> {
        serde_saphyr::from_str(text).ok()
    }

    /// The line of the deepest step of `path` that exists (the field itself, or the
    /// closest enclosing one when a default was used).
    pub fn line(&self, path: &[Step]) -> Option<u64> {
        let mut node = self;
        let mut line = None;
        for step in path {
            let next = match step {
                Step::Key(key) => node
                    .entries
                    .iter()
                    .find(|(k, _, _)| k == key)
                    .map(|(_, l, n)| (*l, n)),
                Step::Index(i) => node.items.get(*i).map(|(l, n)| (*l, n)),
            };
            match next {
                Some((l, n)) => {
                    line = Some(l);
                    node = n;
                }
                None => break,
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_fields() {
        let text = "kind: Cluster\nnodes:\n- role: control-plane\n- role: worker\n  labels:\n    tier: web\nfeatureGates:\n  \"A.b\": true\n";
        let tree = Located::read(text).unwrap();
        assert_eq!(tree.line(&steps("kind")), Some(1));
        assert_eq!(tree.line(&steps("nodes[1].labels.tier")), Some(6));
        assert_eq!(tree.line(&steps("nodes[1].role")), Some(4));
        assert_eq!(tree.line(&steps("featureGates.\"A.b\"")), Some(8));
        // A default: the closest field that is there.
        assert_eq!(tree.line(&steps("nodes[1].extraMounts[0]")), Some(4));
        assert_eq!(tree.line(&steps("networking.podSubnet")), None);
    }
}
