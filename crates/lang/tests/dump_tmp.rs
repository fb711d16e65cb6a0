mod common;
#[test]
fn dump() {
    for f in ["seed_printstackgrow", "functions", "arrays", "context_vars", "aliases"] {
        let p = format!("{}/tests/good/{f}.stp", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&p).unwrap();
        let (sm, script, info, diags) = common::front_end(&p, &src, None);
        println!("{}", sm.render_all(&diags));
        println!("{}", lang::dump_types(&script, &info.unwrap()));
    }
}
