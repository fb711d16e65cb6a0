//! The names of the runtime's wait reasons, read from a binary's own table, against
//! the toolchain's source: the `waitReason` constants in the order `iota` numbers
//! them, and the text `waitReasonStrings` gives each.

use std::collections::HashMap;

use testprogs::{Toolchain, Variant};

/// The wait reasons of `runtime/runtime2.go` of the toolchain, in number order.
fn from_source(tc: &Toolchain) -> Vec<String> {
    let path = tc.goroot().join("src/runtime/runtime2.go");
    let src = std::fs::read_to_string(&path).expect("read runtime2.go");
    // The const block that starts `waitReasonZero waitReason = iota`.
    let start = src
        .find("waitReasonZero ")
        .expect("runtime2.go declares waitReasonZero");
    let block = &src[start..src[start..].find("\n)").map(|e| start + e).expect("end")];
    let order: Vec<&str> = block
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("waitReason"))
        .collect();
    // The strings, by constant name.
    let table = src
        .find("var waitReasonStrings = [...]string{")
        .expect("runtime2.go has waitReasonStrings");
    let body = &src[table..table + src[table..].find("\n}").expect("end")];
    let text: HashMap<&str, String> = body
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(':')?;
            let value = value.trim().trim_end_matches(',');
            Some((
                name.trim(),
                value.strip_prefix('"')?.strip_suffix('"')?.to_string(),
            ))
        })
        .collect();
    // A reason the table does not name reads as "" (the array's zero value); the
    // array ends at the highest one it names.
    let last = order
        .iter()
        .rposition(|n| text.contains_key(n))
        .expect("some reason has a text");
    order[..=last]
        .iter()
        .map(|n| text.get(n).cloned().unwrap_or_default())
        .collect()
}

#[test]
fn wait_reasons_are_the_runtime_table_of_each_release() {
    for tc in testprogs::toolchains() {
        let expected = from_source(&tc);
        assert!(
            expected.len() > 20 && expected.iter().any(|s| s == "chan receive"),
            "go{}: {expected:?}",
            tc.minor
        );
        for variant in [Variant::Default, Variant::Pie, Variant::NoOpt] {
            let exe = testprogs::build("counts", &tc, variant);
            let bytes = std::fs::read(&exe).expect("read test program");
            let bin = gobin::GoBinary::parse(&bytes).expect("a Go binary");
            let got = bin
                .wait_reasons()
                .unwrap_or_else(|| panic!("go{} {variant}: no wait reasons", tc.minor));
            assert_eq!(got, expected, "go{} {variant}", tc.minor);
        }
        // Without a symbol table the table is found from the code that reads it.
        let exe = testprogs::build("counts", &tc, Variant::Stripped);
        let bytes = std::fs::read(&exe).expect("read test program");
        let bin = gobin::GoBinary::parse(&bytes).expect("a Go binary");
        let got = bin
            .wait_reasons()
            .unwrap_or_else(|| panic!("go{} stripped: no wait reasons", tc.minor));
        assert_eq!(got, expected, "go{} stripped", tc.minor);
    }
}
