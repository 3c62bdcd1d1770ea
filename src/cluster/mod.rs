//! The host side: cluster config, the Docker provider, images, PKI, kubeconfig and the
//! actions that create a cluster.

pub mod commands;
pub mod docker;
pub mod image;
pub mod ui;
