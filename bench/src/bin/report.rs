//! Rewrites the load section of `docs/benchmarks.md` from a results file of JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tollgate_bench::report::{self, Meta};

#[derive(Debug, Parser)]
#[command(name = "report")]
struct Args {
    /// The JSON lines `load` printed, plus memory lines.
    #[arg(long)]
    results: PathBuf,
    /// The doc whose marked section is rewritten (created when missing).
    #[arg(long)]
    doc: PathBuf,
    /// The command that produced the results, printed so a reader can repeat it.
    #[arg(long)]
    command: String,
    #[arg(long)]
    date: String,
    /// Extra lines for the "how it was measured" list.
    #[arg(long)]
    note: Vec<String>,
}

/// The CPU model from /proc/cpuinfo (`model name`), or "unknown CPU".
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn run(args: Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.results)
        .map_err(|e| format!("cannot read {}: {e}", args.results.display()))?;
    let records = report::parse(&text).map_err(|e| format!("{}: {e}", args.results.display()))?;
    let meta = Meta {
        date: args.date,
        command: args.command,
        cpu_model: cpu_model(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        notes: args.note,
    };
    let section = report::render(&records, &meta);
    let doc = match std::fs::read_to_string(&args.doc) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report::new_doc(),
        Err(e) => return Err(format!("cannot read {}: {e}", args.doc.display())),
    };
    let doc = report::splice(&doc, &section).map_err(|e| format!("{}: {e}", args.doc.display()))?;
    std::fs::write(&args.doc, doc).map_err(|e| format!("cannot write {}: {e}", args.doc.display()))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}
