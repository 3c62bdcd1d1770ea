//! API machinery shared by the API server and its clients inside rind: the resource
//! registry, selectors, Status errors, name validation, pod defaulting and tables.

pub mod admissionregistration;
pub mod autoscaling;
pub mod batch;
pub mod byte_fields;
pub mod certificates;
pub mod convert;
pub mod crd;
pub mod disruption;
pub mod dra;
pub mod fields;
pub mod flowcontrol;
pub mod kinds;
pub mod limitrange;
pub mod meta;
pub mod object_selector;
pub mod patch;
pub mod pods;
pub mod protobuf;
pub mod quantity;
pub mod query;
pub mod quota;
pub mod rbac;
pub mod registry;
pub mod scale;
pub mod scheduling;
pub mod schema;
pub mod selector;
pub mod servicecidr;
pub mod services;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod workloads;
