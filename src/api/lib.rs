//! API machinery shared by the API server and its clients inside rind: the resource
//! registry, selectors, Status errors, name validation, pod defaulting and tables.

pub mod autoscaling;
pub mod batch;
pub mod byte_fields;
pub mod convert;
pub mod crd;
pub mod disruption;
pub mod fields;
pub mod json;
pub mod kinds;
pub mod meta;
pub mod object_selector;
pub mod patch;
pub mod pods;
pub mod protobuf;
pub mod quantity;
pub mod query;
pub mod rbac;
pub mod registry;
pub mod scale;
pub mod scheduling;
pub mod schema;
pub mod selector;
pub mod services;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod workloads;
