//! What a user sees when the kernel's verifier refuses a compiled probe: the script
//! line that produced the refused instruction and the verifier's reason.

mod common;

use testprogs::Variant;

#[test]
fn a_refusal_points_at_the_script_code_that_caused_it() {
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    // Nested loops allowed a million turns each are more than the verifier will
    // follow (it checks every turn of a loop).
    let src = format!(
        r#"probe process("{}").function("main.add") {{
  x = 0
  for (i = 0; i < $a; i++) {{
    for (j = 0; j < $b; j++) x += j
  }}
  printf("%d\n", x)
}}"#,
        bin.display()
    );
    let opts = codegen::Options {
        max_loop_iterations: 1_000_000,
        ..Default::default()
    };
    let c = common::compile_with(&src, &bin, &opts).unwrap();
    let maps: Vec<sys::Map> = c
        .spec
        .object
        .maps
        .iter()
        .map(|m| sys::Map::create(m).unwrap())
        .collect();
    let err = sys::LoadedProgram::load(&c.spec.object.programs[0], &maps, Default::default())
        .expect_err("the verifier refuses a million times a million turns");
    let sys::Error::Verifier(v) = err else {
        panic!("not a verifier error: {err}")
    };
    let d = c.verifier_diagnostic(0, &v.log);
    assert!(
        d.message
            .starts_with("the kernel verifier rejected this code: "),
        "{}",
        d.message
    );
    // The instruction it stopped at belongs to the loops (lines 3-5), not to the
    // probe's first or last line.
    let start = src.find("for (i").unwrap();
    let end = src.find("printf").unwrap();
    assert!(
        (start..end).contains(&(d.span.start as usize)),
        "{:?} is outside the loops: {}\n{}",
        d.span,
        &src[d.span.start as usize..],
        v.log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_disassembly_names_the_script_lines() {
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let src = format!(
        "probe process(\"{}\").function(\"main.add\") {{\n  x = $a * 3\n  printf(\"%d\\n\", x)\n}}\n",
        bin.display()
    );
    let data = std::fs::read(&bin).unwrap();
    let target = codegen::GoTarget::new(
        gobin::GoBinary::parse(&data).unwrap(),
        bin.to_string_lossy(),
    );
    let mut sm = lang::SourceMap::new();
    let file = sm.add("t.stp", src.as_str());
    let (script, _) = lang::parse(file, &src, &Default::default());
    let (info, diags) = lang::check(&script, &target);
    assert!(!lang::has_errors(&diags));
    let c = codegen::compile_full(&script, &info, &target, &Default::default()).unwrap();
    let text = c.disassemble_with_source(&sm);
    let x = text
        .find("; t.stp:2:3: x = $a * 3")
        .unwrap_or_else(|| panic!("{text}"));
    let p = text.find("; t.stp:3:3: printf").expect("line 3 named");
    assert!(x < p);
    // Between them, the multiplication by 3.
    assert!(
        text[x..p].contains("*= 3") || text[x..p].contains("*= r1"),
        "{}",
        &text[x..p]
    );
}

#[test]
fn statistics_reads_with_the_default_cpu_bound_load() {
    // Options::default() assumes 128 possible CPUs; the verifier follows every turn
    // of each read's CPU loop, so eight reads must still be accepted.
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let src = format!(
        "global s\nprobe process(\"{}\").function(\"main.add\") {{\n  s <<< $a\n  printf(\"%d %d %d %d %d %d %d %d\\n\", @count(s), @sum(s), @min(s), @max(s), @avg(s), @count(s), @sum(s), @avg(s))\n}}\n",
        bin.display()
    );
    let data = std::fs::read(&bin).unwrap();
    let target = codegen::GoTarget::new(
        gobin::GoBinary::parse(&data).unwrap(),
        bin.to_string_lossy(),
    );
    let mut sm = lang::SourceMap::new();
    let file = sm.add("t.stp", src.as_str());
    let (script, _) = lang::parse(file, &src, &Default::default());
    let (info, diags) = lang::check(&script, &target);
    assert!(!lang::has_errors(&diags), "{}", sm.render_all(&diags));
    let c = codegen::compile_full(&script, &info, &target, &Default::default()).unwrap();
    common::load(&c, sys::AttachKind::PerfEvent);
}

#[test]
fn many_loops_in_a_row_fit_the_stack() {
    // Each loop keeps its counter on the BPF stack only while it runs.
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let mut body = String::new();
    for _ in 0..80 {
        body.push_str("  for (i = 0; i < 2; i++) x++\n");
    }
    let src = format!(
        "probe process(\"{}\").function(\"main.sum\") {{\n  x = 0\n{body}  printf(\"%d\\n\", x)\n}}\n",
        bin.display()
    );
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &[]);
    assert_eq!(run.texts(), vec!["160\n".to_string()]);
}
