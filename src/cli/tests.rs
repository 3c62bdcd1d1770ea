//! Argument parsing, checked against kind's flags for each command.

use super::create::CreateCommand;
use super::delete::DeleteCommand;
use super::export::ExportCommand;
use super::get::GetCommand;
use super::load::LoadCommand;
use super::{Cli, ClusterName, Command};
use clap::Parser;
use std::path::PathBuf;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("rind").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn fails(args: &[&str]) -> String {
    Cli::try_parse_from(std::iter::once("rind").chain(args.iter().copied()))
        .expect_err("should not parse")
        .to_string()
}

#[test]
fn global_flags_go_anywhere() {
    let cli = parse(&["-q", "get", "clusters"]);
    assert!(cli.quiet);
    let cli = parse(&["get", "clusters", "-v", "2"]);
    assert_eq!(cli.verbosity, 2);
    let cli = parse(&["create", "cluster", "--verbosity=3", "--quiet"]);
    assert!(cli.quiet);
    assert_eq!(cli.verbosity, 3);
    assert_eq!(parse(&["version"]).verbosity, 0);
}

#[test]
fn create_cluster_flags_are_kinds() {
    let cli = parse(&[
        "create",
        "cluster",
        "-n",
        "x",
        "--config",
        "-",
        "--image",
        "img:1",
        "--retain",
        "--wait",
        "2m",
        "--kubeconfig",
        "/tmp/k",
    ]);
    let Command::Create(CreateCommand::Cluster(args)) = cli.command else {
        panic!("not create cluster")
    };
    assert_eq!(args.name.as_deref(), Some("x"));
    assert_eq!(args.config.as_deref(), Some("-"));
    assert_eq!(args.image.as_deref(), Some("img:1"));
    assert!(args.retain);
    assert_eq!(args.wait, "2m");
    assert_eq!(args.kubeconfig, Some(PathBuf::from("/tmp/k")));
    let Command::Create(CreateCommand::Cluster(args)) = parse(&["create", "cluster"]).command
    else {
        panic!()
    };
    assert_eq!(args.wait, "0s");
    assert!(!args.retain && args.name.is_none());
    // kind's create takes no positional arguments.
    fails(&["create", "cluster", "extra"]);
}

#[test]
fn delete_clusters_takes_names_or_all() {
    let Command::Delete(DeleteCommand::Clusters { names, all, .. }) =
        parse(&["delete", "clusters", "a", "b"]).command
    else {
        panic!()
    };
    assert_eq!(names, ["a", "b"]);
    assert!(!all);
    for flag in ["-A", "--all"] {
        let Command::Delete(DeleteCommand::Clusters { names, all, .. }) =
            parse(&["delete", "clusters", flag]).command
        else {
            panic!()
        };
        assert!(all && names.is_empty());
    }
    let Command::Delete(DeleteCommand::Cluster { name, kubeconfig }) =
        parse(&["delete", "cluster", "--name", "z", "--kubeconfig", "k"]).command
    else {
        panic!()
    };
    assert_eq!(name.name.as_deref(), Some("z"));
    assert_eq!(kubeconfig, Some(PathBuf::from("k")));
}

#[test]
fn get_nodes_all_clusters_and_kubeconfig_internal() {
    for flag in ["-A", "--all-clusters"] {
        let Command::Get(GetCommand::Nodes { all_clusters, .. }) =
            parse(&["get", "nodes", flag]).command
        else {
            panic!()
        };
        assert!(all_clusters);
    }
    let Command::Get(GetCommand::Kubeconfig { name, internal }) =
        parse(&["get", "kubeconfig", "-n", "c", "--internal"]).command
    else {
        panic!()
    };
    assert!(internal);
    assert_eq!(name.name.as_deref(), Some("c"));
    fails(&["get", "nodes", "extra"]);
}

#[test]
fn export_logs_takes_an_optional_dir() {
    let Command::Export(ExportCommand::Logs { dir, .. }) =
        parse(&["export", "logs", "/tmp/out.tar.gz"]).command
    else {
        panic!()
    };
    assert_eq!(dir, Some(PathBuf::from("/tmp/out.tar.gz")));
    let Command::Export(ExportCommand::Logs { dir, .. }) = parse(&["export", "logs"]).command
    else {
        panic!()
    };
    assert!(dir.is_none());
    fails(&["export", "logs", "a", "b"]);
    let Command::Export(ExportCommand::Kubeconfig { internal, .. }) =
        parse(&["export", "kubeconfig", "--internal"]).command
    else {
        panic!()
    };
    assert!(internal);
}

#[test]
fn load_takes_images_and_comma_separated_nodes() {
    let Command::Load(LoadCommand::DockerImage { images, nodes, .. }) =
        parse(&["load", "docker-image", "a:1", "b:2", "--nodes", "n1,n2"]).command
    else {
        panic!()
    };
    assert_eq!(images, ["a:1", "b:2"]);
    assert_eq!(nodes, ["n1", "n2"]);
    let Command::Load(LoadCommand::ImageArchive {
        archives, nodes, ..
    }) = parse(&["load", "image-archive", "x.tar", "y.tar", "--nodes=n1"]).command
    else {
        panic!()
    };
    assert_eq!(archives, [PathBuf::from("x.tar"), PathBuf::from("y.tar")]);
    assert_eq!(nodes, ["n1"]);
    fails(&["load", "docker-image"]);
    fails(&["load", "image-archive"]);
}

/// The one test touching the process environment, so no other test races it.
#[test]
fn cluster_name_flag_then_environment_then_default() {
    let flag = ClusterName {
        name: Some("flag".into()),
    };
    let none = ClusterName { name: None };
    // SAFETY: no other test in this binary reads or writes the environment.
    unsafe { std::env::set_var(super::CLUSTER_NAME_ENV, "env") };
    assert_eq!(flag.resolve(), "flag");
    assert_eq!(none.resolve(), "env");
    unsafe { std::env::set_var(super::CLUSTER_NAME_ENV, "") };
    assert_eq!(none.resolve(), "rind");
    assert_eq!(none.given(), None);
    unsafe { std::env::remove_var(super::CLUSTER_NAME_ENV) };
    assert_eq!(none.resolve(), "rind");
}

#[test]
fn go_quoted_lists() {
    assert_eq!(super::commands::go_quoted_list(&[]), "[]");
    assert_eq!(
        super::commands::go_quoted_list(&["a".into(), "b".into()]),
        "[\"a\" \"b\"]"
    );
}
