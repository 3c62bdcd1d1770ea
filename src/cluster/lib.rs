//! The host side: cluster config, the Docker provider, images, PKI, kubeconfig and the
//! actions that create a cluster.

pub mod actions;
pub mod client;
pub mod config;
pub mod config_source;
pub mod docker;
pub mod duration;
pub mod etcd;
pub mod gates;
pub mod image;
pub mod kubeadm_patches;
pub mod kubeconfig;
pub mod lifecycle;
pub mod load;
pub mod logs;
pub mod operations;
pub mod pki;
pub mod plan;
pub mod provider;
pub mod ui;
