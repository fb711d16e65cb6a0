//! The end-to-end directive files of crates/cli/tests/scripts (run there through
//! `gotap`) checked here through codegen alone: every file whose probes all run in
//! the kernel is compiled, run on its program through real uprobes, and its
//! `# expect:` lines are matched, in order, against what its printf records say, up
//! to an error or `exit()` record (where a session ends). Files that need user space
//! beyond printf (begin/end/timer probes, printf widths) are left to the CLI runner.

mod common;

use bpf::script::EventSpec;
use testprogs::Variant;

/// A regular expression of the subset the directive files use: `^`, `$`, `\x`
/// escapes, `.*`, literal characters.
fn matches(re: &str, s: &str) -> bool {
    let re = re.strip_prefix('^').unwrap_or(re);
    let re = re.strip_suffix('$').unwrap_or(re);
    let mut toks: Vec<Option<char>> = Vec::new(); // None = .*
    let mut it = re.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(it.next()),
            '.' if it.peek() == Some(&'*') => {
                it.next();
                toks.push(None);
            }
            c => toks.push(Some(c)),
        }
    }
    fn go(t: &[Option<char>], s: &[char]) -> bool {
        match t.split_first() {
            None => s.is_empty(),
            Some((None, rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((Some(c), rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let s: Vec<char> = s.chars().collect();
    go(&toks, &s)
}

#[test]
fn kernel_only_directive_files_print_what_they_expect() {
    let dir = testprogs::repo_root().join("crates/cli/tests/scripts");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().is_none_or(|e| e != "stp") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let header = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .map(String::from)
                .collect()
        };
        let user_space = ["probe begin", "probe end", "probe timer"]
            .iter()
            .any(|p| text.contains(p))
            || text.contains("%5d");
        // Files that expect a failure, or nothing on stdout, are the CLI runner's.
        // Only files whose expectations are anchored lines of the script's own
        // output are checked here (others also match the program's output).
        let anchored = header("expect")
            .iter()
            .all(|e| e.starts_with('^') && e.ends_with('$'));
        if user_space || !header("exit").is_empty() || header("expect").is_empty() || !anchored {
            continue;
        }
        let prog = header("prog").pop().unwrap_or_else(|| "counts".into());
        let args: Vec<String> = header("args")
            .pop()
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let expects = header("expect");
        let bin = testprogs::build(&prog, &testprogs::newest(), Variant::Default);
        let c = common::compile(&text, &bin).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = common::run(&c, &bin, &args);
        let mut out = String::new();
        for r in &run.records {
            match r.event {
                EventSpec::Printf { .. } => out.push_str(&r.text()),
                EventSpec::Error { .. } | EventSpec::Exit => break,
                _ => {}
            }
        }
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), expects.len(), "{}: {lines:?}", path.display());
        for (l, e) in lines.iter().zip(&expects) {
            assert!(
                matches(e, l),
                "{}: {l:?} does not match {e}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} files checked");
}
