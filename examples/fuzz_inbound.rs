//! Long fuzz runs of a session's inbound path (the engine is `fuzz/inbound.rs`):
//! `cargo run --release --example fuzz_inbound -- --inputs 10000000 [--seed N]`. Prints the
//! inputs run, accepted and refused, panics and violations (with the first inputs, as hex), and
//! the peak resident memory; exits non-zero on any panic or violation.

#[path = "../fuzz/inbound.rs"]
mod engine;

use clap::Parser;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// How many inputs to run.
    #[arg(long, default_value_t = 10_000_000)]
    inputs: u64,
    /// The generator's seed (the same seed runs the same inputs).
    #[arg(long, default_value_t = 0x5eed_f00d)]
    seed: u64,
}

/// Peak resident set size in KiB (Linux), from /proc/self/status.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let findings = engine::run(args.seed, args.inputs, |f| {
        eprint!(
            "\r{} inputs, {} panics, {} violations, peak RSS {} KiB   ",
            f.inputs,
            f.panic_count,
            f.violation_count,
            peak_rss_kib().unwrap_or(0)
        );
    });
    eprintln!();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "inputs {}  accepted {}  refused {}  panics {}  violations {}  in {:.1} s ({:.0}/s)  peak RSS {} KiB  seed {:#x}",
        findings.inputs,
        findings.accepted,
        findings.refused,
        findings.panic_count,
        findings.violation_count,
        secs,
        findings.inputs as f64 / secs.max(1e-9),
        peak_rss_kib().unwrap_or(0),
        args.seed
    );
    for p in &findings.panics {
        println!("panic on input {p}");
    }
    for v in &findings.violations {
        println!("violation: {v}");
    }
    if findings.panic_count > 0 || findings.violation_count > 0 {
        std::process::exit(1);
    }
}
