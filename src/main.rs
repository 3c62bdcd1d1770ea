//! rind: local Kubernetes clusters whose nodes are Docker containers. One binary is the
//! host CLI and, inside a node, every node component (`rind node …`).

mod cli;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use std::process::ExitCode;

// The API server builds and drops a JSON tree per object on every list, watch and write,
// from many threads at once; glibc's malloc spends most of a large LIST consolidating
// freed chunks across arenas. mimalloc's thread-local free lists make that cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: printed, and a success.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        // A usage error exits 1 like every other error (kind's cobra does not use 2),
        // and `-q` silences it as it silences everything on stderr.
        Err(err) => {
            if !quiet_in_args() {
                let _ = err.print();
            }
            return ExitCode::FAILURE;
        }
    };
    let quiet = cli.quiet;
    // One TLS crypto provider for every client and server in the process (kube, tonic,
    // our own listeners), chosen explicitly so no library has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The HA load balancer only shuffles bytes between sockets, one per cluster; the
    // network agent and the service proxy on every node are a few watches and one sync
    // loop whose real work is done by `nft`/`iptables-restore` child processes. A
    // single-threaded runtime keeps their idle memory to what they hold: a worker
    // thread per core would add its stack and its allocator heap (issue 18's target is
    // agent + proxy <= 20 MB per node). So does the cluster DNS server (a pod with a
    // 20 MB budget): its UDP loop answers from a cache without spawning, and one thread
    // serves it as fast as the client can ask.
    let mut builder = match cli.command {
        Command::Node(
            cli::node::NodeCommand::Lb
            | cli::node::NodeCommand::Net
            | cli::node::NodeCommand::Proxy,
        )
        | Command::Dns(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("ERROR: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // kind's `-q`: "silence all stderr output", its error included; the exit
            // status still tells.
            if !quiet {
                eprintln!("ERROR: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether `-q`/`--quiet` is among the arguments, for when they did not parse (kind
/// looks for the flag the same way before its command parses).
fn quiet_in_args() -> bool {
    std::env::args().skip(1).any(|a| {
        a == "--quiet"
            || a == "--quiet=true"
            || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('q'))
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ui = rind_cluster::ui::Ui::new(cli.quiet, cli.verbosity);
    match cli.command {
        Command::Create(cmd) => cli::commands::create(cmd, &ui).await,
        Command::Delete(cmd) => cli::commands::delete(cmd, &ui).await,
        Command::Get(cmd) => cli::commands::get(cmd, &ui).await,
        Command::Export(cmd) => cli::commands::export(cmd, &ui).await,
        Command::Load(cmd) => cli::commands::load(cmd, &ui).await,
        Command::Start(cmd) => cli::lifecycle::start(cmd, &ui).await,
        Command::Stop(cmd) => cli::lifecycle::stop(cmd, &ui).await,
        Command::Add(cmd) => cli::lifecycle::add(cmd, &ui).await,
        Command::Build(cmd) => cli::commands::build(cmd, &ui).await,
        Command::Version => {
            println!(
                "rind v{} {}/{}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            Ok(())
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rind", &mut std::io::stdout());
            Ok(())
        }
        Command::Node(cmd) => cli::node::run(cmd).await,
        Command::Dns(args) => rind_dns::run(args).await,
        Command::Bench(cmd) => rind_bench::api::run(cmd).await,
    }
}
