//! Go values printed as Go prints them (issue 13): `tests/testprogs/values.go` holds
//! one value of each kind in a struct, passes them as arguments and keeps them in a
//! local, and prints each with `fmt.Printf("%+v")`; gotap's `$v$` and `$v$$` of the
//! same values must print the same text. The program's lines and gotap's go to the
//! same stdout, gotap's prefixed with `gotap `. Pointers print as the program's own
//! addresses (the same memory is read), and maps are small enough to be read whole,
//! so their entries sort as `fmt` sorts them. A stripped build is read through
//! `@cast` at the offsets the program prints, for the standard types whose layout
//! gotap knows. A `net/http` request and recursive types (a list, a tree) show the
//! bounds: a plan that costs no more than its budget, and a visible `…` where it
//! cut. Needs root.

mod common;

use common::*;
use std::fmt::Write as _;

/// The toolchains the issue names, those installed.
fn toolchains() -> Vec<Toolchain> {
    let want = ["1.21", "1.25", "1.27"];
    let tcs: Vec<Toolchain> = testprogs::toolchains()
        .into_iter()
        .filter(|t| want.contains(&t.minor.as_str()))
        .collect();
    assert!(!tcs.is_empty(), "none of Go {want:?} is installed");
    tcs
}

/// The line of `values.go` marked `// locals: probe here`.
fn locals_line() -> usize {
    let src = std::fs::read_to_string(testprogs::source("values")).expect("values.go");
    src.lines()
        .position(|l| l.contains("// locals: probe here"))
        .expect("the marked line")
        + 1
}

/// gotap's lines (`gotap X`) and the program's (`X`) with the same head, as pairs.
fn pairs<'a>(stdout: &'a str, heads: &[&str]) -> Vec<(String, &'a str, &'a str)> {
    let mut out = Vec::new();
    for head in heads {
        let ours: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("gotap "))
            .filter(|l| l.starts_with(&format!("{head} ")))
            .collect();
        let theirs: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{head} ")))
            .collect();
        // A statement probe fires once for each block its line starts: each
        // of its lines is held to the program's one.
        assert!(
            !ours.is_empty() && (ours.len() == theirs.len() || theirs.len() == 1),
            "{head}: gotap printed {} lines, the program {}:\n{stdout}",
            ours.len(),
            theirs.len()
        );
        for (i, o) in ours.into_iter().enumerate() {
            out.push((head.to_string(), o, theirs[i.min(theirs.len() - 1)]));
        }
    }
    out
}

fn run_script(bin: &std::path::Path, tag: &str, src: &str, extra: &[&str]) -> (String, String) {
    let private = Private::copy(bin, tag);
    let path = private.path.with_file_name("values.stp");
    std::fs::write(
        &path,
        src.replace("BIN", &private.path.display().to_string()),
    )
    .expect("write the script");
    let out = run(gotap()
        .args(extra)
        .arg(&path)
        .arg("-c")
        .arg(private.path.display().to_string()));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{src}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Every kind, in a struct behind a pointer argument, in three structs passed by
/// value, and in a local: `$v$` prints what `%+v` prints, on each toolchain (and
/// position-independent on the newest, where types are found through the load bias).
#[test]
fn every_kind_prints_as_fmt_prints_it_on_go_1_21_1_25_1_27() {
    let newest = testprogs::newest().minor;
    let runs = toolchains().into_iter().flat_map(|tc| {
        let pie = (tc.minor == newest).then(|| (tc.clone(), Variant::Pie));
        [(tc, Variant::Default)].into_iter().chain(pie)
    });
    for (tc, variant) in runs {
        let bin = testprogs::build("values", &tc, variant);
        let src = format!(
            r#"probe process("BIN").function("main.showZoo") {{ printf("gotap showZoo %s\n", $z$) }}
probe process("BIN").function("main.showParts") {{
  printf("gotap showParts n %s\n", $n$)
  printf("gotap showParts c %s\n", $c$)
  printf("gotap showParts d %s\n", $d$)
}}
probe process("BIN").statement("main.locals@values.go:{}") {{ printf("gotap locals %s\n", $z$) }}
"#,
            locals_line()
        );
        let tag = format!("kinds-{}-{variant}", tc.minor);
        let (stdout, stderr) = run_script(&bin, &tag, &src, &[]);
        for (head, ours, theirs) in pairs(
            &stdout,
            &[
                "showZoo",
                "showParts n",
                "showParts c",
                "showParts d",
                "locals",
            ],
        ) {
            assert_eq!(ours, theirs, "Go {} {variant}: {head}", tc.minor);
        }
        assert!(!stderr.contains("left out"), "Go {}: {stderr}", tc.minor);
    }
}

/// `$v$$` follows pointers below the top: the struct a field points to prints as
/// `&{…}`, where `%+v` prints its address; the program prints the pointee too.
/// `$$parms$$` prints each parameter so. An error whose message is not a field
/// prints as its type and data word, never as if it were its message.
#[test]
fn deep_printing_follows_pointers_below_the_top() {
    let tc = testprogs::newest();
    let bin = testprogs::build("values", &tc, Variant::Default);
    let src = r#"probe process("BIN").function("main.showZoo") {
  printf("gotap showZoo %s\n", $z$$)
  printf("gotap deep showZoo P %s\n", $z->Comp->P$$)
  printf("gotap parms %s\n", $$parms$$)
}
probe process("BIN").function("main.showErr") { printf("gotap showErr %s\n", $err$) }
"#;
    let (stdout, _) = run_script(&bin, "deep", src, &[]);
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
            .to_string()
    };
    let pointee = line("deep showZoo P ")["deep showZoo P ".len()..].to_string();
    assert_eq!(
        line("gotap deep showZoo P "),
        format!("gotap deep showZoo P &{pointee}")
    );
    // The program's %+v with P's address replaced by what it points to.
    let theirs = line("showZoo ");
    let at = theirs.find(" P:0x").expect("P's address") + 3;
    let end = at + theirs[at..].find(' ').expect("after P");
    let want = format!("{}&{pointee}{}", &theirs[..at], &theirs[end..]);
    assert_eq!(line("gotap showZoo "), format!("gotap {want}"));
    assert_eq!(
        line("gotap parms "),
        format!("gotap parms z={}", &want["showZoo ".len()..])
    );
    let err = line("gotap showErr ");
    let re = regex::Regex::new(r"^gotap showErr \(\*fs\.PathError\)\(0x[0-9a-f]+\)$").unwrap();
    assert!(re.is_match(&err), "{err}");
    assert_eq!(
        line("showErr "),
        "showErr open /nowhere: file does not exist"
    );
}

/// A binary without DWARF or symbols: the standard types (maps — classic before Go
/// 1.24, Swiss tables after —, strings, slices, errors, `any`, `time.Duration`,
/// `time.Time`) named with `@cast` at the offsets the program prints, and `len`/`cap`.
#[test]
fn standard_types_print_as_fmt_prints_them_stripped() {
    for tc in toolchains() {
        let bin = testprogs::build("values", &tc, Variant::Stripped);
        // The offsets are the program's: run it once to learn them.
        let first = run(&mut std::process::Command::new(&bin));
        let program = text(&first.stdout);
        let fields = [
            ("S", "string"),
            ("Bytes", "[]uint8"),
            ("Ints", "[]int"),
            ("Strs", "[]string"),
            ("M", "map[string]int"),
            ("MI", "map[int]string"),
            ("Err", "error"),
            ("Wrapped", "error"),
            ("AnyS", "any"),
            ("D", "time.Duration"),
            ("T", "time.Time"),
            ("Zoned", "time.Time"),
        ];
        let offset = |name: &str| -> u64 {
            program
                .lines()
                .find_map(|l| l.strip_prefix(&format!("field {name} ")))
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no offset of {name} in {program}"))
        };
        let mut src = String::from(
            "probe process(\"BIN\").function(\"main.showZoo\") {\n  z = register(\"rax\")\n",
        );
        for (name, ty) in fields {
            let off = offset(name);
            writeln!(
                src,
                "  printf(\"gotap field {name} {off} %s\\n\", @cast(z + {off}, \"{ty}\")$)"
            )
            .unwrap();
        }
        let (s, strs, m) = (offset("S"), offset("Strs"), offset("M"));
        writeln!(
            src,
            "  printf(\"gotap lens %d %d %d %d\\n\", len(@cast(z + {s}, \"string\")), len(@cast(z + {strs}, \"[]string\")), cap(@cast(z + {strs}, \"[]string\")), len(@cast(z + {m}, \"map[string]int\")))\n}}"
        )
        .unwrap();
        let (stdout, _) = run_script(&bin, &format!("stripped-{}", tc.minor), &src, &[]);
        let heads: Vec<String> = fields.iter().map(|(n, _)| format!("field {n}")).collect();
        let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
        for (head, ours, theirs) in pairs(&stdout, &heads) {
            assert_eq!(ours, theirs, "Go {} stripped: {head}", tc.minor);
        }
        let lens = stdout
            .lines()
            .find(|l| l.starts_with("lens "))
            .expect("the program's lens");
        let ours = stdout
            .lines()
            .find_map(|l| l.strip_prefix("gotap lens "))
            .expect("gotap's lens");
        let theirs: Vec<&str> = lens.split(' ').skip(1).collect();
        // The program's: len(S) len(Strs) cap(Strs) len(M) …
        let want = [theirs[0], theirs[1], theirs[2], theirs[3]].join(" ");
        assert_eq!(ours, want, "Go {} stripped: lens", tc.minor);
    }
}

/// `len()` and `cap()` of strings, slices, maps (nil too), channels and arrays, and
/// `%f`, `%e`, `%g` with flags, widths and precisions of a `float64` and a
/// `float32`, as the program prints them.
#[test]
fn len_cap_and_floats_print_as_go_prints_them() {
    for tc in toolchains() {
        let bin = testprogs::build("values", &tc, Variant::Default);
        let src = r#"probe process("BIN").function("main.showZoo") {
  c = 0
  printf("gotap lens %d %d %d %d %d %d %d %d\n", len($z->Comp->S), len($z->Comp->Strs), cap($z->Comp->Strs), len($z->Comp->M), len($z->Comp->MNil), len($z->Comp->Ch), cap($z->Comp->Ch), len($z->Comp->Arr))
  f = $z->Num->F64
  printf("gotap floats %f %e %.3g %10.2f|%-12.3e|%+.1f %f %e\n", f, f, f, f, f, f, $z->Num->F32, $z->Num->F32)
}
"#;
        let (stdout, _) = run_script(&bin, &format!("lens-{}", tc.minor), src, &[]);
        for (head, ours, theirs) in pairs(&stdout, &["lens", "floats"]) {
            assert_eq!(ours, theirs, "Go {}: {head}", tc.minor);
        }
    }
}

/// The phases `-v` times: type check (DWARF included) and compile, in ms.
fn compile_ms(stderr: &str) -> f64 {
    stderr
        .lines()
        .filter(|l| l.contains("checked its types in") || l.contains("compiled the probes"))
        .filter_map(|l| l.rsplit(" in ").next())
        .filter_map(|t| t.trim_end_matches(" ms").parse::<f64>().ok())
        .sum()
}

/// `$r$$` of a `*net/http.Request` (issue 13's hang) compiles in under 200 ms in a
/// release build (10 times that in a debug one) and prints a bounded result, marked
/// where the budget cut it, with the cuts counted at exit.
#[test]
fn a_request_compiles_in_under_200ms_release_and_prints_bounded_and_marked() {
    let tc = testprogs::newest();
    let bin = testprogs::build("httpsvc", &tc, Variant::Default);
    let private = Private::copy(&bin, "request");
    let target = format!("{} 2 20", private.path.display());
    let script = |extra: &[&str]| {
        let out = run(gotap()
            .arg("-v")
            .args(extra)
            .arg("-e")
            .arg(r#"probe process.function("main.itemHandler") { printf("gotap %s\n", $r$$) }"#)
            .arg("-c")
            .arg(&target));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        (stdout, stderr)
    };
    let bound = if cfg!(debug_assertions) {
        2000.0
    } else {
        200.0
    };
    for extra in [&[][..], &["-D", "MAXPRETTYBYTES=512"][..]] {
        let (stdout, stderr) = script(extra);
        let ms = compile_ms(&stderr);
        assert!(ms > 0.0 && ms < bound, "{ms} ms to compile:\n{stderr}");
        let lines: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("gotap "))
            .collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        for l in &lines {
            assert!(l.starts_with("&{Method:GET URL:&"), "{l}");
            assert!(l.len() < 8192, "{} bytes", l.len());
        }
        let cut = lines.iter().any(|l| l.contains('…'));
        if extra.is_empty() {
            // The default budget holds the request's own fields.
            assert!(
                lines[0].contains("RequestURI:/item?name=apple"),
                "{}",
                lines[0]
            );
        } else {
            assert!(cut, "512 bytes hold all of a request: {}", lines[0]);
        }
        assert_eq!(
            cut,
            stderr.contains("parts of pretty-printed values were left out"),
            "{stderr}"
        );
    }
}

/// Recursive types cost no more than the budget: a 100-node list and a 12-level tree
/// printed with `$$` stop at the depth limit, marked, and however deep the limit,
/// the program stays within what the byte budget allows.
#[test]
fn recursive_types_are_bounded_by_the_budget() {
    let tc = testprogs::newest();
    let bin = testprogs::build("values", &tc, Variant::Default);
    let src = r#"probe process("BIN").function("main.walk") { printf("gotap list %s\n", $n$$); printf("gotap tree %s\n", $t$$) }"#;
    let (stdout, _) = run_script(&bin, "recursive", src, &[]);
    let list = stdout
        .lines()
        .find_map(|l| l.strip_prefix("gotap list "))
        .expect("the list");
    assert!(
        list.starts_with("&{Val:1 Next:&{Val:2 Next:&{Val:3 Next:&{") && list.ends_with("&…}}}}}}"),
        "{list}"
    );
    let tree = stdout
        .lines()
        .find_map(|l| l.strip_prefix("gotap tree "))
        .expect("the tree");
    assert!(
        tree.starts_with("&{Left:&{Left:&{") && tree.contains("&…"),
        "{tree}"
    );
    // The program's size with the depth limit raised from 6 to 64: the byte budget
    // bounds both.
    let private = Private::copy(&bin, "recursive-size");
    let size = |depth: &str| {
        let out = run(gotap()
            .args(["-D", &format!("MAXPRETTYDEPTH={depth}"), "-d", "bpf", "-e"])
            .arg(src.replace("BIN", &private.path.display().to_string())));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // `-d bpf` prints the instructions on stderr.
        text(&out.stderr)
            .lines()
            .filter(|l| {
                l.trim_start()
                    .split(':')
                    .next()
                    .is_some_and(|n| n.parse::<usize>().is_ok())
            })
            .count()
    };
    let (shallow, deep) = (size("6"), size("64"));
    assert!(
        shallow < deep && deep < 30_000,
        "{shallow} and {deep} instructions"
    );
}

/// A probe whose pretty-printed values make a program too long to load is refused
/// with what to change, at the probe, before anything is loaded.
#[test]
fn too_long_a_program_is_refused_with_its_remedy() {
    let tc = testprogs::newest();
    let bin = testprogs::build("httpsvc", &tc, Variant::Default);
    let private = Private::copy(&bin, "too-long");
    let out = run(gotap()
        .args(["-D", "MAXPRETTYBYTES=16384", "-e"])
        .arg(r#"probe process.function("main.itemHandler") { printf("%s %s %s\n", $r$, $r$$, $w$$) }"#)
        .arg("-c")
        .arg(format!("{} 1 1", private.path.display())));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("<input>:1:1: error: this probe compiles to")
            && stderr.contains("-D MAXPRETTYBYTES=N"),
        "{stderr}"
    );
}
