//! The one place YAML is read and written (serde-saphyr; serde_yaml is unmaintained).

use serde::Serialize;
use serde::de::DeserializeOwned;

pub type Error = serde_saphyr::Error;

pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_saphyr::from_str(text)
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(value)
}
