//! The script front end as a fuzz target: an input is a script's text (any bytes,
//! read as the CLI reads a file, with invalid UTF-8 replaced), run through the
//! lexer, the parser, the checker against a real Go binary of the corpus (so that
//! process probes, context variables and `@cast` resolve), and codegen's lowering
//! when the checker accepts it. Nothing is loaded in the kernel: what the driver looks
//! for is a panic, an abort (a stack overflow is one), a hang or a runaway allocation.
//!
//! Seeds are the repository's own scripts (listed in `corpus/stp/scripts.list`), and
//! for each of them hostile shapes a byte-level mutation would seldom reach: its
//! first expression nested thousands deep in parentheses, unary minus and `if`s, and a
//! chain of thousands of `+`.

use std::path::Path;
use std::sync::OnceLock;

use gobin::GoBinary;

use crate::mutate::Spot;

/// The seeds named by a `scripts.list` file (its bytes), in a stable order, each
/// followed by its hostile variants.
pub fn seeds(list: &[u8]) -> Vec<Vec<u8>> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = Vec::new();
    for line in String::from_utf8_lossy(list).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = top.join(line);
        if line.ends_with('/') {
            let mut files: Vec<_> = std::fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "stp"))
                .collect();
            files.sort();
            paths.extend(files);
        } else {
            paths.push(p);
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.extend(hostile(&text));
        out.push(text);
    }
    out
}

/// Deep and long shapes of a script's first parenthesised expression.
fn hostile(text: &[u8]) -> Vec<Vec<u8>> {
    let Some(open) = text.iter().position(|&b| b == b'(') else {
        return Vec::new();
    };
    let splice = |inner: Vec<u8>| {
        let mut v = text[..=open].to_vec();
        v.extend(inner);
        v.extend_from_slice(&text[open + 1..]);
        v
    };
    let n = 5_000;
    vec![
        splice([b"(".repeat(n), b"1".to_vec(), b")".repeat(n), b"+".to_vec()].concat()),
        splice([b"-".repeat(n), b"1+".to_vec()].concat()),
        splice([b"1+".repeat(n)].concat()),
        splice(
            [
                b"1?".repeat(n / 2),
                b"1".to_vec(),
                b":1".repeat(n / 2),
                b"+".to_vec(),
            ]
            .concat(),
        ),
    ]
}

/// Aim at the script's punctuation and keywords: that is where structure is.
pub fn spots(text: &[u8]) -> Vec<Spot> {
    text.iter()
        .enumerate()
        .filter(|(_, b)| b"(){}[]$@;,.:?<>=!+-*/%\"'#".contains(b))
        .map(|(i, _)| Spot::bytes(i, 1))
        .take(4096)
        .collect()
}

/// The Go binary scripts are checked against: the corpus's build with plain DWARF,
/// inflated once per child process.
fn binary() -> &'static [u8] {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| crate::corpus::read(&crate::corpus::root().join("go/go1.21-plaindwarf.z")))
}

/// How far a script went: the test suite checks that the seeds reach every stage, so
/// that the target fuzzes the checker and the lowering, not only the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Parsed,
    Checked,
    Compiled,
    Lowered,
}

/// Runs one script through the front end and, when it checks, the lowering.
pub fn run(input: &[u8]) {
    let _ = stage(input);
}

/// [`run`], saying how far the script went (`None`: refused by the parser).
pub fn stage(input: &[u8]) -> Option<Stage> {
    let text = String::from_utf8_lossy(input);
    let mut sm = lang::SourceMap::new();
    let file = sm.add("fuzz.stp", text.as_ref());
    let opts = lang::ParseOptions {
        args: Some(vec!["1".into(), "main.main".into()]),
    };
    let (script, diags) = lang::parse(file, &text, &opts);
    let _ = sm.render_all(&diags);
    if lang::has_errors(&diags) {
        return None;
    }
    let _ = lang::print_script(&script);
    let Ok(bin) = GoBinary::parse(binary()) else {
        return Some(Stage::Parsed);
    };
    let target = codegen::GoTarget::new(bin, "/fuzz/seed");
    let (info, diags) = lang::check(&script, &target);
    let _ = sm.render_all(&diags);
    let _ = lang::dump_types(&script, &info);
    if lang::has_errors(&diags) {
        return Some(Stage::Checked);
    }
    let copts = codegen::Options {
        sources: Some(&sm),
        ..codegen::Options::default()
    };
    match codegen::compile_full(&script, &info, &target, &copts) {
        Ok(c) => {
            let _ = c.disassemble_with_source(&sm);
            Some(Stage::Lowered)
        }
        Err(_) => Some(Stage::Compiled),
    }
}
