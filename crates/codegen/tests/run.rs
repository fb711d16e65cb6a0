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

#[test]
fn one_program_serves_every_site_of_a_wildcard() {
    let bin = counts();
    let src = script(
        r#"global calls
probe process("BIN").function("main.[lr]e*") { calls++ }"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    // main.leaf and main.recurse: one program, two sites with distinct cookies.
    assert_eq!(c.spec.object.programs.len(), 1);
    let sites: Vec<u64> = c
        .spec
        .attachments
        .iter()
        .flat_map(|a| a.sites.iter().map(|s| s.cookie))
        .collect();
    assert_eq!(sites.len(), 2);
    assert_ne!(sites[0], sites[1]);
    let run = common::run(&c, &bin, &["2"]);
    // counts.go: 2 rounds of 1000 leaf calls and 8 × 200 recurse calls.
    assert_eq!(run.global_long("calls"), 2 * (1000 + 8 * 200));
}

#[test]
fn defined_keeps_only_the_branch_that_applies() {
    let bin = counts();
    let src = script(
        r#"probe process("BIN").function("main.leaf") {
  if (@defined($nosuch)) printf("%d\n", $nosuch)
  else if (@defined($i) && $i == 999) printf("i=%d %d\n", $i, @defined($i))
}"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &["1"]);
    assert_eq!(run.texts(), vec!["i=999 1\n".to_string()]);
}

#[test]
fn goroutine_ids_differ_between_goroutines() {
    let bin = counts();
    let src = script(
        r#"global ids
probe process("BIN").function("main.recurse") { ids[goid()]++ }
probe process("BIN").function("main.leaf") { ids[goid()] += 1000000 }"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &["1"]);
    let mut counts: Vec<i64> = run
        .array("ids")
        .iter()
        .map(|(_, v)| i64::from_le_bytes(v[..8].try_into().unwrap()))
        .collect();
    counts.sort();
    // The main goroutine calls leaf 1000 times; 8 other goroutines recurse 200 times.
    let mut expect = vec![200; 8];
    expect.push(1000 * 1000000);
    assert_eq!(counts, expect);
    let main_key = run
        .array("ids")
        .into_iter()
        .find(|(_, v)| i64::from_le_bytes(v[..8].try_into().unwrap()) == 1000 * 1000000)
        .unwrap()
        .0;
    assert_eq!(
        i64::from_le_bytes(main_key[..8].try_into().unwrap()),
        1,
        "main is goroutine 1"
    );
}

#[test]
fn entry_values_survive_recursion_and_stack_growth() {
    let bin = counts();
    let src = script(
        r#"global seen
probe process("BIN").function("main.recurse").return { seen[@entry($n)]++ }"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &["1"]);
    // counts.go: 8 goroutines each call recurse(199) down to recurse(0), growing
    // their stacks on the way; every return must find its own call's n.
    let mut seen: Vec<(i64, i64)> = run
        .array("seen")
        .iter()
        .map(|(k, v)| {
            (
                i64::from_le_bytes(k[..8].try_into().unwrap()),
                i64::from_le_bytes(v[..8].try_into().unwrap()),
            )
        })
        .collect();
    seen.sort();
    let expect: Vec<(i64, i64)> = (0..200).map(|n| (n, 8)).collect();
    assert_eq!(seen, expect);
    // Every saved call was forgotten at its return.
    let pending = c
        .spec
        .object
        .maps
        .iter()
        .position(|m| m.name.starts_with("gotap_entry"))
        .unwrap();
    assert_eq!(run.obj.maps[pending].keys().unwrap().len(), 0);
}

#[test]
fn stripped_binaries_count_and_know_their_goroutines_on_every_toolchain() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("counts", &tc, Variant::Stripped);
        let src = script(
            r#"global ids
probe process("BIN").function("main.recurse") { ids[goid()]++ }
probe process("BIN").function("main.leaf") { ids[goid()] += 1000000 }"#,
            &bin,
        );
        let c = common::compile(&src, &bin).unwrap_or_else(|e| panic!("{}: {e}", tc.version));
        let run = common::run(&c, &bin, &["1"]);
        let mut got: Vec<(i64, i64)> = run
            .array("ids")
            .iter()
            .map(|(k, v)| {
                (
                    i64::from_le_bytes(k[..8].try_into().unwrap()),
                    i64::from_le_bytes(v[..8].try_into().unwrap()),
                )
            })
            .collect();
        got.sort_by_key(|(_, n)| *n);
        assert_eq!(got.len(), 9, "{}: {got:?}", tc.version);
        assert!(
            got[..8].iter().all(|(id, n)| *n == 200 && *id > 1),
            "{}: {got:?}",
            tc.version
        );
        assert_eq!(got[8], (1, 1000 * 1000000), "{}", tc.version);
    }
}

#[test]
fn probefunc_names_each_site_of_one_program() {
    let bin = counts();
    let src = script(
        r#"global calls
probe process("BIN").function("main.*") { calls[probefunc(), pp()]++ }"#,
        &bin,
    );
    let c = common::compile(&src, &bin).unwrap();
    assert_eq!(c.spec.object.programs.len(), 1);
    let run = common::run(&c, &bin, &["1"]);
    let mut got: Vec<(String, String, i64)> = run
        .array("calls")
        .iter()
        .map(|(k, v)| {
            let s = |b: &[u8]| {
                let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..n]).into_owned()
            };
            (
                s(&k[..128]),
                s(&k[128..]),
                i64::from_le_bytes(v[..8].try_into().unwrap()),
            )
        })
        .collect();
    got.sort();
    // counts.go's documented calls, each under its own name and probe point.
    for (f, n) in [
        ("main.leaf", 1000),
        ("main.recurse", 1600),
        ("main.(*T).Method", 10),
        ("main.once", 1),
        ("main.main", 1),
    ] {
        let pp = format!("process(\"{}\").function(\"{f}\")", bin.display());
        assert!(got.contains(&(f.to_string(), pp, n)), "{f}: {got:?}");
    }
}
