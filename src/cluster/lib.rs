//! The host side: cluster config, the Docker provider, images, PKI, kubeconfig and the
//! actions that create a cluster.

pub mod actions;
pub mod client;
pub mod config;
pub mod docker;
pub mod duration;
pub mod etcd;
pub mod image;
pub mod kubeconfig;
pub mod load;
pub mod logs;
pub mod operations;
pub mod pki;
pub mod plan;
pub mod provider;
pub mod ui;
