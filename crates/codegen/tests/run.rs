//! Scripts compiled against real Go programs, loaded through the kernel's verifier,
//! attached with real uprobes and run: what they count and print is compared with
//! what the Go program is known to do (its source documents the call counts).

mod common;

use testprogs::Variant;

fn counts() -> std::path::PathBuf {
    testprogs::build("counts", &testprogs::newest(), Variant::Default)
}

fn script(body: &str, bin: &std::path::Path) -> String {
    body.replace("BIN", &bin.to_string_lossy())
}

#[test]
fn a_global_counts_every_call_once() {
    let bin = counts();
    let src = script(
        r#"global n, r
probe process("BIN").function("main.leaf") { n++ }
probe process("BIN").function("main.recurse") { r += 1 }"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &["1"]);
    assert_eq!(run.global_long("n"), 1000);
    // counts.go: ROUNDS × 8 goroutines × 200 calls, each once despite stack growth.
    assert_eq!(run.global_long("r"), 8 * 200);
}
