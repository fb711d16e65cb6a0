//! The probe language in the kernel, item by item: each script runs on
//! tests/testprogs/script.go (whose calls and arguments are documented there) through
//! real uprobes, and what it prints or stores is what that source implies.

mod common;

use std::path::PathBuf;

use bpf::script::EventSpec;
use testprogs::Variant;

fn prog() -> PathBuf {
    testprogs::build("script", &testprogs::newest(), Variant::Default)
}

/// Runs a script (BIN stands for the program's path) and returns its printf lines.
fn lines(src: &str) -> Vec<String> {
    run(src).texts()
}

fn run(src: &str) -> common::Run {
    let bin = prog();
    let src = src.replace("BIN", &bin.to_string_lossy());
    let c = common::compile(&src, &bin).unwrap_or_else(|e| panic!("{e}"));
    common::run(&c, &bin, &[])
}

fn adds(f: impl Fn(i64) -> String) -> Vec<String> {
    (0..10).map(f).collect()
}

#[test]
fn arguments_and_arithmetic() {
    let out = lines(
        r#"probe process("BIN").function("main.add") {
  printf("%d %d %d %d %d\n", $a, $b, $a + $b * 2 - 1, ($b << 3) >> 1, -$a & 0xff | 1 ^ 3)
}"#,
    );
    assert_eq!(
        out,
        adds(|a| format!(
            "{a} {} {} {} {}\n",
            2 * a,
            a + 2 * a * 2 - 1,
            ((2 * a) << 3) >> 1,
            (-a & 0xff) | (1 ^ 3)
        ))
    );
}

#[test]
fn division_and_modulo_truncate_toward_zero() {
    let out = lines(
        r#"probe process("BIN").function("main.add") {
  x = $a - 5
  printf("%d %d %d %d\n", x / 3, x % 3, 17 / (x ? x : 1), -17 % (x ? x : 1))
}"#,
    );
    let expect = adds(|a| {
        let x = a - 5;
        let d = if x != 0 { x } else { 1 };
        format!("{} {} {} {}\n", x / 3, x % 3, 17 / d, -17 % d)
    });
    assert_eq!(out, expect);
}

#[test]
fn division_by_zero_ends_the_probe_with_an_error() {
    let r = run(r#"probe process("BIN").function("main.add") {
  printf("before %d\n", $a)
  y = 10 / ($a - 3)
  printf("after %d\n", y)
}"#);
    let errors: Vec<&EventSpec> = r
        .records
        .iter()
        .map(|r| &r.event)
        .filter(|e| matches!(e, EventSpec::Error { .. }))
        .collect();
    assert_eq!(errors.len(), 1);
    let EventSpec::Error { message } = errors[0] else {
        unreachable!()
    };
    // Stap's words, as user space says them too: the operator and the probe point.
    assert!(
        message.starts_with("division by 0 near operator '/' at test.stp:3:10 in probe process("),
        "{message}"
    );
    // Every hit prints "before"; the one with $a == 3 stops at the division.
    let afters: Vec<String> = r
        .texts()
        .into_iter()
        .filter(|t| t.starts_with("after"))
        .collect();
    let expect: Vec<String> = (0..10i64)
        .filter(|a| *a != 3)
        .map(|a| format!("after {}\n", 10 / (a - 3)))
        .collect();
    assert_eq!(afters, expect);
    assert_eq!(
        r.texts().iter().filter(|t| t.starts_with("before")).count(),
        10
    );
}

#[test]
fn results_in_return_probes() {
    let out = lines(
        r#"probe process("BIN").function("main.add").return { printf("%d\n", $return) }
probe process("BIN").function("main.sum").return { printf("sum %d %d\n", $total, $return) }
probe process("BIN").function("main.flag").return { printf("flag %d\n", $return) }"#,
    );
    let mut expect = adds(|a| format!("{}\n", 3 * a));
    expect.push("sum 10 10\n".into());
    expect.push("flag 65535\n".into());
    expect.push("flag -7\n".into());
    assert_eq!(out, expect);
}

#[test]
fn strings_members_and_sign_extension() {
    let out = lines(
        r#"probe process("BIN").function("main.greet") {
  s = $name . "!"
  t = "<" . s . ">"
  printf("%s %s %d %d %d\n", s, t, $name->len, $n, strlen(t))
}
probe process("BIN").function("main.move") {
  printf("%d %d %s %d\n", $p->X, $p->Y, $p->Name, $dx)
}
probe process("BIN").function("main.sum") {
  printf("%d %d %d %d\n", $xs->len, $xs->cap, $xs[0], $xs[3])
}
probe process("BIN").function("main.flag") {
  printf("%d %d %d\n", $b, $u, $i32)
}"#,
    );
    let mut expect = Vec::new();
    for n in ["ada", "bob", "cy"] {
        let s = format!("{n}!");
        let t = format!("<{s}>");
        expect.push(format!("{s} {t} {} -{} {}\n", n.len(), n.len(), t.len()));
    }
    expect.push("4 4 1 4\n".into());
    expect.push("1 2 pt 5\n".into());
    expect.push("6 2 pt -3\n".into());
    expect.push("1 65535 -7\n".into());
    expect.push("0 1 -7\n".into());
    let mut got = out.clone();
    got.sort();
    expect.sort();
    assert_eq!(got, expect);
}

#[test]
fn control_flow() {
    let out = lines(
        r#"probe process("BIN").function("main.add") {
  if ($a % 2 == 1) next
  x = 0
  for (i = 0; i < $a; i++) {
    if (i == 3) continue
    if (i > 6) break
    x += i
  }
  n = 0
  while (n * n < $a) n++
  c = ($a > 4 && $a < 8) ? 1 : ($a == 0 || 10 / $a > 3) ? 2 : 3
  printf("%d %d %d %d\n", $a, x, n, c)
}"#,
    );
    let mut expect = Vec::new();
    for a in (0..10).filter(|a| a % 2 == 0) {
        let x: i64 = (0..a).take_while(|i| *i <= 6).filter(|i| *i != 3).sum();
        let mut n = 0;
        while n * n < a {
            n += 1;
        }
        let c = if a > 4 && a < 8 {
            1
        } else if a == 0 || 10 / a > 3 {
            2
        } else {
            3
        };
        expect.push(format!("{a} {x} {n} {c}\n"));
    }
    assert_eq!(out, expect);
}

#[test]
fn string_comparison_and_functions() {
    let out = lines(
        r#"function shout:string(s:string) { return s . "!" }
function twice(x) { if (x < 0) return -2 * x; return 2 * x }
probe process("BIN").function("main.greet") {
  n = $name
  printf("%d %d %d %d %s %d\n", n == "bob", n != "bob", n < "bob", n > "b", shout(n), twice($n))
}"#,
    );
    let expect: Vec<String> = ["ada", "bob", "cy"]
        .iter()
        .map(|n| {
            let l = -(n.len() as i64);
            format!(
                "{} {} {} {} {n}! {}\n",
                (*n == "bob") as i32,
                (*n != "bob") as i32,
                (*n < "bob") as i32,
                (*n > "b") as i32,
                if l < 0 { -2 * l } else { 2 * l }
            )
        })
        .collect();
    assert_eq!(out, expect);
}

#[test]
fn globals_arrays_and_statistics() {
    let r = run(r#"global total = 100, last, names, pairs, s, h, lin
probe process("BIN").function("main.add") {
  total += $a
  last = $a
  s <<< $a
  h <<< $a - 4
  lin <<< $a
  pairs[$a % 3, "k"] += $b
}
probe process("BIN").function("main.greet") {
  names[$name] = $n
  if ($name in names) total++
}
probe end { print(@hist_log(h)); print(@hist_linear(lin, 0, 10, 2)) }"#);
    assert_eq!(r.global_long("total"), 100 + 45 + 3);
    assert_eq!(r.global_long("last"), 9);
    let names = r.array("names");
    let mut got: Vec<(String, i64)> = names
        .iter()
        .map(|(k, v)| {
            let n = k.iter().position(|&c| c == 0).unwrap();
            (
                String::from_utf8_lossy(&k[..n]).into_owned(),
                i64::from_le_bytes(v[..8].try_into().unwrap()),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("ada".into(), -3), ("bob".into(), -3), ("cy".into(), -2)]
    );
    let mut pairs: Vec<(i64, i64)> = r
        .array("pairs")
        .iter()
        .map(|(k, v)| {
            assert_eq!(&k[8..10], b"k\0");
            (
                i64::from_le_bytes(k[..8].try_into().unwrap()),
                i64::from_le_bytes(v[..8].try_into().unwrap()),
            )
        })
        .collect();
    pairs.sort();
    let sum_b = |m: i64| (0..10).filter(|a| a % 3 == m).map(|a| 2 * a).sum::<i64>();
    assert_eq!(pairs, vec![(0, sum_b(0)), (1, sum_b(1)), (2, sum_b(2))]);
    let (count, sum, min, max, _) = r.stat("s", &0u32.to_le_bytes());
    assert_eq!((count, sum, min, max), (10, 45, 0, 9));
    // Log buckets as runtime::stats defines them: 0 → 64, v → 64 ± bits(|v|).
    let (_, _, min, max, buckets) = r.stat("h", &0u32.to_le_bytes());
    assert_eq!((min, max), (-4, 5));
    let mut expect = vec![0i64; 128];
    for a in 0..10i64 {
        let v = a - 4;
        let bits = 64 - v.unsigned_abs().leading_zeros() as i64;
        let b = if v == 0 {
            64
        } else if v > 0 {
            64 + bits
        } else {
            64 - bits
        };
        expect[b as usize] += 1;
    }
    assert_eq!(buckets, expect);
    // Linear 0..10 step 2: underflow, 5 buckets, overflow.
    let (_, _, _, _, buckets) = r.stat("lin", &0u32.to_le_bytes());
    let mut expect = vec![0i64; 8];
    for a in 0..10i64 {
        expect[((a / 2 + 1) as usize).min(7)] += 1;
    }
    assert_eq!(buckets, expect);
}

/// The statistics slots a real probe fills read back, through `runtime::stats`, as
/// the same aggregate that user space's own `<<<` (`Stat::add`) makes of the same
/// values: count, sum, min, max and every bucket of a log and two linear histograms,
/// for values at the edges (powers of two, both signs, `i64::MIN` and `MAX`). Both
/// sides take the layout and the bucket rules from `bpf::stats`.
#[test]
fn statistics_slots_are_what_user_space_aggregates() {
    use runtime::stats::{Hist, Linear, Stat};
    let r = run(r#"global lg, ln, wide
probe process("BIN").function("main.add") {
  for (k = 0; k < 63; k += 9) {
    v = ($a - 5) << k
    lg <<< v; ln <<< v; wide <<< v
  }
  if ($a == 9) { lg <<< -9223372036854775807 - 1; lg <<< 9223372036854775807 }
}
probe end { print(@hist_log(lg)); print(@hist_linear(ln, -100, 100, 10)); print(@hist_linear(wide, -4611686018427387904, 4611686018427387904, 144115188075855872)) }"#);
    let mut values = Vec::new();
    for a in 0..10i64 {
        for k in (0..63).step_by(9) {
            values.push((a - 5).wrapping_shl(k));
        }
    }
    let extremes = [i64::MIN, i64::MAX];
    let cases = [
        ("lg", Hist::Log, true),
        (
            "ln",
            Hist::Linear(Linear::new(-100, 100, 10).unwrap()),
            false,
        ),
        (
            "wide",
            Hist::Linear(Linear::new(-(1 << 62), 1 << 62, 1 << 57).unwrap()),
            false,
        ),
    ];
    for (name, hist, with_extremes) in cases {
        let mut want = Stat::new(&hist);
        for &v in values
            .iter()
            .chain(extremes.iter().filter(|_| with_extremes))
        {
            want.add(&hist, v);
        }
        let got = Stat::from_per_cpu(&hist, &r.stat_slots(name, &0u32.to_le_bytes()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn builtins() {
    let r = run(r#"probe process("BIN").function("main.sum") {
  printf("%d %d %s %s %s %d\n", pid() == tid(), goid(), execname(), pp(), probefunc(), cpu() >= 0)
  printf("%d %d\n", gettimeofday_s(), gettimeofday_ms() / 1000)
  printf("%d %s %d %d\n", user_long(&$xs[1]), user_string_n($xs->array, 0), user_int(&$xs[2]), user_char(&$xs[3]))
  exit()
}"#);
    let texts = r.texts();
    let bin = prog();
    let comm: String = bin
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    assert_eq!(
        texts[0],
        format!(
            "1 1 {comm} process(\"{}\").function(\"main.sum\") main.sum 1\n",
            bin.display()
        )
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let secs: Vec<i64> = texts[1]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!((secs[0] - now).abs() < 30, "{} vs {now}", secs[0]);
    assert!((secs[1] - secs[0]).abs() <= 1);
    assert_eq!(texts[2], "2  3 4\n");
    assert!(r.records.iter().any(|r| r.event == EventSpec::Exit));
}

#[test]
fn sprintf_sprint_and_pretty_printing() {
    let out = lines(
        r#"probe process("BIN").function("main.move") {
  s = sprintf("p=%d/%x/%X/%o/%s/%c%%", $dx, 255, 255, 8, $p->Name, 65)
  t = sprint($dx) . sprint("!")
  printf("%s %s|%s|%s\n", s, t, $$parms, $p$)
}
probe process("BIN").function("main.greet") {
  printf("%s|%s\n", $$parms, sprintf("%d%s", -9223372036854775807 - 1, "x"))
}"#,
    );
    // p's address is not known in advance: check the rest around it.
    assert_eq!(out.len(), 5, "{out:?}");
    for (line, dx, x) in [(&out[3], 5i64, 1i64), (&out[4], -3, 6)] {
        let (head, rest) = line.split_once("|p=0x").unwrap();
        assert_eq!(head, format!("p={dx}/ff/FF/10/pt/A% {dx}!"));
        let (addr, rest) = rest.split_once(' ').unwrap();
        assert!(u64::from_str_radix(addr, 16).unwrap() > 0);
        assert_eq!(
            rest,
            format!("dx={:#x}|&{{X:{x} Y:2 Name:pt}}\n", dx as u64)
        );
    }
    for (line, name) in out[..3].iter().zip(["ada", "bob", "cy"]) {
        let n = (-(name.len() as i64)) as u64;
        assert_eq!(*line, format!("name=\"{name}\" n={n:#x}|{}x\n", i64::MIN));
    }
}

#[test]
fn statistics_read_in_the_kernel_merge_every_cpu() {
    let out = lines(
        r#"global s, k
probe process("BIN").function("main.add") {
  s <<< $a - 3
  k[$a % 2] <<< $b
  printf("%d %d %d %d %d %d\n", @count(s), @sum(s), @min(s), @max(s), @avg(s), @count(k[1]))
}"#,
    );
    let expect: Vec<String> = (0..10i64)
        .map(|a| {
            let vals: Vec<i64> = (0..=a).map(|x| x - 3).collect();
            let (n, sum) = (vals.len() as i64, vals.iter().sum::<i64>());
            let odd = (0..=a).filter(|x| x % 2 == 1).count();
            format!(
                "{n} {sum} {} {} {} {odd}\n",
                vals.iter().min().unwrap(),
                vals.iter().max().unwrap(),
                sum / n
            )
        })
        .collect();
    assert_eq!(out, expect);
}

/// Fields of one struct reached through one pointer variable are read from the
/// target at once (the `window` module): each reads what it reads alone, also after
/// the variable has changed, and a pointer that faults shows how many reads were
/// made — one for three fields, where three reads would count three faults.
#[test]
fn fields_of_one_struct_are_read_at_once() {
    let run = run(r#"probe process("BIN").function("main.move") {
  p = $p
  x = @cast(p, "main.Point")->X
  y = @cast(p, "main.Point")->Y
  n = @cast(p, "main.Point")->Name->len
  p = p + 8
  moved = @cast(p, "main.Point")->X
  bad = 8
  zero = @cast(bad, "main.Point")->X + @cast(bad, "main.Point")->Y + @cast(bad, "main.Point")->Name->len
  printf("%d %d %d %d %d %d %d\n", x, y, n, moved, $p->X, $p->Y, zero)
}"#);
    // move(p, 5) on Point{X: 1, Y: 2, Name: "pt"}, then move(p, -3); the Point
    // moved by one word has the first's Y as its X.
    assert_eq!(
        run.texts(),
        vec!["1 2 2 2 1 2 0\n".to_string(), "6 2 2 2 6 2 0\n".to_string()]
    );
    let counters = run.obj.map(run.spec.counters.unwrap()).unwrap();
    let faults: u64 = counters
        .get_per_cpu(&bpf::script::counter::READ_FAULTS.to_le_bytes())
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap()))
        .sum();
    assert_eq!(faults, 2, "one faulting read per hit");
}

#[test]
fn entry_values_in_return_probes() {
    let out = lines(
        r#"probe process("BIN").function("main.move").return {
  printf("%d %d %d %s\n", @entry($p->X), @cast(@entry($p), "main.Point")->X, @entry($dx), @entry($p->Name))
}"#,
    );
    // move(p, 5) on X=1, then move(p, -3).
    assert_eq!(
        out,
        vec!["1 6 5 pt\n".to_string(), "6 3 -3 pt\n".to_string()]
    );
}

#[test]
fn return_set_and_unnamed_results() {
    let out = lines(
        r#"probe process("BIN").function("main.sum").return { println($$return) }
probe process("BIN").function("main.flag").return { println($$return, " ", $r0) }"#,
    );
    assert_eq!(
        out,
        vec![
            "total=0xa\n".to_string(),
            format!("r0={:#x} 65535\n", 65535),
            format!("r0={:#x} -7\n", -7i64 as u64),
        ]
    );
}

#[test]
fn context_values_on_every_toolchain_and_build() {
    let src = r#"probe process("BIN").function("main.greet") { printf("%s %d %d\n", $name, $name->len, $n) }
probe process("BIN").function("main.move") { printf("%d %s %d\n", $p->X, $p->Name, $dx) }
probe process("BIN").function("main.sum") { printf("%d %d\n", $xs->len, $xs[3]) }
probe process("BIN").function("main.flag") { printf("%d %d %d\n", $b, $u, $i32) }
probe process("BIN").function("main.add").return { if ($return == 27) printf("add %d\n", $return) }
probe process("BIN").function("main.sum").return { printf("sum %d\n", $total) }"#;
    let expect: Vec<String> = [
        "ada 3 -3",
        "bob 3 -3",
        "cy 2 -2",
        "add 27",
        "sum 10",
        "4 4",
        "1 pt 5",
        "6 pt -3",
        "1 65535 -7",
        "0 1 -7",
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect();
    let mut expect_sorted = expect.clone();
    expect_sorted.sort();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::NoOpt, Variant::Pie] {
            let bin = testprogs::build("script", &tc, v);
            let c = common::compile(&src.replace("BIN", &bin.to_string_lossy()), &bin)
                .unwrap_or_else(|e| panic!("{} {v}: {e}", tc.version));
            let mut got = common::run(&c, &bin, &[]).texts();
            got.sort();
            assert_eq!(got, expect_sorted, "{} {v}", tc.version);
        }
    }
}

#[test]
fn backtraces_from_entry_statement_and_return_probes() {
    let bin = prog();
    let data = std::fs::read(&bin).unwrap();
    let gb = gobin::GoBinary::parse(&data).unwrap();
    let r = run(
        r#"probe process("BIN").function("main.add") { if ($a == 1) print_ubacktrace() }
probe process("BIN").function("main.sum").return { print_ubacktrace_fileline() }
probe process("BIN").statement("main.sum@script.go:36") { if ($xs[0] == 1) print_ubacktrace() }"#,
    );
    let traces: Vec<Vec<String>> = r
        .records
        .iter()
        .filter(|r| matches!(r.event, EventSpec::Backtrace { .. }))
        .map(|r| {
            r.frames
                .iter()
                .map(|pc| {
                    gb.function_at(gobin::VirtAddr(*pc))
                        .map_or(format!("{pc:#x}"), |f| f.name.to_string())
                })
                .collect()
        })
        .collect();
    // main.main calls add and sum directly; runtime.main calls main.main.
    let expect_add = ["main.add", "main.main", "runtime.main", "runtime.goexit"];
    let expect_sum = ["main.sum", "main.main", "runtime.main", "runtime.goexit"];
    assert_eq!(traces[0], expect_add);
    // The statement fires once per element; the first backtrace is from it.
    assert_eq!(traces[1..5].len(), 4);
    for t in &traces[1..5] {
        assert_eq!(t, &expect_sum);
    }
    assert_eq!(traces[5], expect_sum);
    assert_eq!(traces.len(), 6);
}

#[test]
fn substr_cuts_like_stap() {
    let out = lines(
        r#"probe process("BIN").function("main.greet") {
  s = $name . "-xyz"
  printf("[%s][%s][%s][%s]\n", substr(s, 1, 3), substr(s, 0, 100), substr(s, 10, 2), substr(s, 2, 0))
}"#,
    );
    let expect: Vec<String> = ["ada", "bob", "cy"]
        .iter()
        .map(|n| {
            let s = format!("{n}-xyz");
            let sub = |a: usize, l: usize| s.get(a..(a + l).min(s.len())).unwrap_or("").to_string();
            format!(
                "[{}][{}][{}][{}]\n",
                sub(1, 3),
                sub(0, 100),
                sub(10, 2),
                sub(2, 0)
            )
        })
        .collect();
    assert_eq!(out, expect);
}
