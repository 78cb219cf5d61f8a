//! A short fuzz run of a session's inbound path in the normal suite (the engine is
//! `fuzz/inbound.rs`; long runs: `cargo run --release --example fuzz_inbound -- --inputs N`).

#[path = "../fuzz/inbound.rs"]
mod engine;

// Guards against: a frame that panics the decoder or the rules (a panic in a session task kills
// that client's session and is a crash in waiting), a refusal with an undocumented code, and a
// message the server accepts but would not read back the same.
#[test]
fn a_hundred_thousand_fuzzed_frames_are_each_answered_without_a_panic() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let findings = engine::run(seed, 100_000, |_| {});
    println!("{findings:?}");
    assert_eq!(findings.inputs, 100_000);
    assert_eq!(
        findings.panic_count, 0,
        "panicking inputs: {:?}",
        findings.panics
    );
    assert_eq!(
        findings.violation_count, 0,
        "violations: {:?}",
        findings.violations
    );
    // The mix reaches past the shape check: some inputs are accepted, most refused.
    assert!(findings.accepted > 1_000, "{findings:?}");
    assert!(findings.refused > 10_000, "{findings:?}");
}
