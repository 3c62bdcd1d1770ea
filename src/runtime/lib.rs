//! What every in-node component shares, and what the host side and the node agree on:
//! the node's configuration file and paths, the one YAML and logging setup, the API
//! client built from a kubeconfig, reflector stores kept filled from a watch, Events
//! about pods as upstream's recorders write them, Lease leader election, trimming a small process's resident code, and HTTP forwarding with upgrades (the API
//! server to kubelets, the kubelet to the runtime's streaming server). Components
//! import this crate, never each other.

pub mod client;
pub mod component_status;
pub mod config;
pub mod containerd_patch;
pub mod events;
pub mod forward;
pub mod leader;
pub mod logging;
pub mod memory;
pub mod paths;
pub mod reflect;
pub mod yaml;

pub use config::{NodeConfig, ProxyMode, RegisterTaint, Role};
