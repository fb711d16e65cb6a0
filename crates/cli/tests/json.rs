//! `gotap -f json`: every line of the output is one JSON object (read here with
//! serde_json, a real parser) in bpftrace's shapes, and the values in it are the
//! traced program's own counts (`tests/testprogs/counts.go`: `main.leaf(i)` for i in
//! 0..1000 each round, `(*T).Method` 10 times a round, which it prints at the end as
//! `done N`, `main.once` once). Real gotap, real kernel. Needs root.

mod common;

use common::*;
use serde_json::Value;

const ROUNDS: i64 = 3;

/// The objects of a JSON-lines output; a line that is not one JSON object fails.
fn objects(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// The `data` of the objects of `kind` that hold `name`.
fn data<'v>(objs: &'v [Value], kind: &str, name: &str) -> &'v Value {
    objs.iter()
        .filter(|o| o["type"] == kind)
        .find_map(|o| o["data"].get(name))
        .unwrap_or_else(|| panic!("no {kind} object for {name} in {objs:#?}"))
}

#[test]
fn json_output_is_one_object_a_line_with_the_programs_own_counts() {
    let bin = testprogs::build("counts", &testprogs::newest(), Variant::Default);
    let private = Private::copy(&bin, "json-output");
    let dir = private.path.parent().expect("dir").to_path_buf();
    let script = dir.join("counts.stp");
    std::fs::write(
        &script,
        r#"global leafs, methods, st, where
probe process.function("main.leaf") { leafs++; st <<< $i }
probe process.function("main.(*T).Method") { methods[probefunc()]++ }
probe process.function("main.once") { where[ubacktrace()]++; printf("once \"q\"\t%d\n", 1) }
probe end {
  printf("leafs %d\n", leafs)
  print(@hist_linear(st, 0, 1000, 100))
}
"#,
    )
    .expect("write the script");
    let out_file = dir.join("counts.json");
    let out = run(gotap()
        .args(["-f", "json", "-o"])
        .arg(&out_file)
        .arg(&script)
        .arg("-c")
        .arg(format!("{} {ROUNDS}", private.path.display())));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The program's own count of Method calls.
    let done: i64 = text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("done "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the program's `done N`");
    assert_eq!(done, ROUNDS * 10);

    let json = std::fs::read_to_string(&out_file).expect("the output");
    let objs = objects(&json);
    assert_eq!(objs[0]["type"], "attached_probes", "{json}");
    assert!(objs[0]["count"].as_u64().unwrap_or(0) >= 3, "{json}");
    let printed: Vec<&str> = objs
        .iter()
        .filter(|o| o["type"] == "printf")
        .filter_map(|o| o["data"].as_str())
        .collect();
    assert!(printed.contains(&"once \"q\"\t1\n"), "{printed:?}");
    assert!(
        printed.contains(&format!("leafs {}\n", ROUNDS * 1000).as_str()),
        "{printed:?}"
    );
    // Globals at the end: a scalar, an array, a statistic and its histogram.
    assert_eq!(data(&objs, "map", "leafs"), &Value::from(ROUNDS * 1000));
    assert_eq!(
        data(&objs, "map", "methods")["main.(*T).Method"],
        Value::from(done)
    );
    let st = data(&objs, "stats", "st");
    assert_eq!(st["count"], Value::from(ROUNDS * 1000));
    assert_eq!(st["total"], Value::from(ROUNDS * (0..1000).sum::<i64>()));
    assert_eq!(
        (st["min"].as_i64(), st["max"].as_i64()),
        (Some(0), Some(999))
    );
    let hist = data(&objs, "hist", "st").as_array().expect("buckets");
    assert_eq!(hist.len(), 10, "{hist:?}");
    for (i, b) in hist.iter().enumerate() {
        let lo = 100 * i as i64;
        assert_eq!(
            (b["min"].as_i64(), b["max"].as_i64(), b["count"].as_i64()),
            (Some(lo), Some(lo + 99), Some(ROUNDS * 100)),
            "{hist:?}"
        );
    }
    // A stack key is its addresses, as the text output prints it; main.once ran once.
    let wheres = data(&objs, "map", "where").as_object().expect("an array");
    assert_eq!(wheres.len(), 1, "{wheres:?}");
    let (stack, n) = wheres.iter().next().expect("one stack");
    assert!(
        stack.split(' ').all(|a| a.starts_with("0x")) && stack.split(' ').count() >= 2,
        "{stack}"
    );
    assert_eq!(n, &Value::from(1));
    let last = objs.last().expect("objects");
    assert_eq!(
        (&last["type"], &last["count"]),
        (&"lost_events".into(), &0.into())
    );
}

#[test]
fn format_json_is_the_long_form_and_needs_no_binary() {
    let out = run(gotap().args([
        "--format",
        "json",
        "-e",
        "global n, a; probe begin { n = 3; a[\"x\", 2] = 5; printf(\"hi %d\\n\", n); exit() }",
    ]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let objs = objects(&stdout);
    let printed: Vec<&str> = objs
        .iter()
        .filter(|o| o["type"] == "printf")
        .filter_map(|o| o["data"].as_str())
        .collect();
    assert_eq!(printed, ["hi 3\n"], "{stdout}");
    assert_eq!(data(&objs, "map", "n"), &Value::from(3));
    assert_eq!(data(&objs, "map", "a")["x,2"], Value::from(5));
}
