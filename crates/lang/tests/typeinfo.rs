//! What codegen reads from the checker: the resolved probe points, the typed variables,
//! per-expression types, `@defined` outcomes, and the `-d types` dump — checked on the
//! seed article's script against the mock target.

mod common;

use lang::ast::{ExprKind, Item, StmtKind, walk_stmt};
use lang::probe::{Lines, ProbeKind, Site};
use lang::{Type, dump_types};

const SEED: &str = include_str!("good/seed_printstackgrow.stp");

#[test]
fn seed_script_resolves_and_types() {
    let (sm, script, info, diags) = common::front_end("seed.stp", SEED, None);
    assert!(diags.is_empty(), "{}", sm.render_all(&diags));
    let info = info.expect("checked");

    let g = info.global("printstackgrow").expect("global");
    assert_eq!((g.ty, &g.keys), (Some(Type::Long), &None));

    assert_eq!(info.probes.len(), 1);
    let p = &info.probes[0];
    let ProbeKind::Process(pp) = &p.points[0].kind else {
        panic!("{:?}", p.points[0].kind)
    };
    assert_eq!(pp.path.as_deref(), Some("./example"));
    assert_eq!(
        pp.site,
        Site::Statement {
            function: "runtime.newstack".into(),
            file: Some("/usr/lib/golang/src/runtime/stack.go".into()),
            lines: Lines::One(936),
        }
    );
    assert_eq!(p.points[0].locations.len(), 1);
    assert_eq!(p.points[0].locations[0].line, Some(936));
    let locals: Vec<(&str, Option<Type>)> =
        p.locals.iter().map(|v| (v.name.as_str(), v.ty)).collect();
    assert_eq!(
        locals,
        vec![
            ("shouldPrintStack", Some(Type::Long)),
            ("oldSize", Some(Type::Long)),
            ("newSize", Some(Type::Long)),
        ]
    );

    // All five context expressions in the handler (stack hi/lo, morebuf pc/sp/lr) are
    // uintptrs read as longs.
    let Item::Probe(def) = &script.items[p.item] else {
        panic!("not a probe")
    };
    let mut targets = 0;
    for s in &def.body.stmts {
        walk_stmt(s, &mut |e| {
            if let ExprKind::Target(_) = e.kind {
                targets += 1;
                assert_eq!(info.expr_type(e), Some(Type::Long));
                assert_eq!(info.go_types[&e.id].name, "uintptr");
            }
        });
    }
    assert_eq!(targets, 5);
}

#[test]
fn types_dump_shows_inferred_types_and_go_types() {
    let (_, script, info, _) = common::front_end("seed.stp", SEED, None);
    let dump = dump_types(&script, &info.expect("checked"));
    assert!(dump.contains("global printstackgrow: long\n"), "{dump}");
    assert!(dump.contains("  local oldSize: long\n"), "{dump}");
    assert!(
        dump.contains("at runtime.newstack /usr/lib/golang/src/runtime/stack.go:936"),
        "{dump}"
    );
    assert!(
        dump.contains("$thisg->m->curg->stack->hi /* long (uintptr) */"),
        "{dump}"
    );
}

#[test]
fn defined_outcomes_are_recorded() {
    let src = "probe process(\"./example\").function(\"main.say\") {\n  \
               if (@defined($nosuch)) println($nosuch)\n  \
               if (@defined($s)) println($s)\n}\n";
    let (sm, script, info, diags) = common::front_end("d.stp", src, None);
    assert!(diags.is_empty(), "{}", sm.render_all(&diags));
    let info = info.expect("checked");
    let Item::Probe(p) = &script.items[0] else {
        panic!()
    };
    let outcomes: Vec<bool> = p
        .body
        .stmts
        .iter()
        .map(|s| match &s.kind {
            StmtKind::If { cond, .. } => info.defined[&cond.id],
            _ => panic!(),
        })
        .collect();
    assert_eq!(outcomes, vec![false, true]);
}

#[test]
fn rendered_diagnostic_has_source_line_caret_help_and_note() {
    let src = "global x\nprobe begin {\n  x = 1\n  println(@count(x))\n}\n";
    let (sm, _, _, diags) = common::front_end("c.stp", src, None);
    assert_eq!(
        sm.render_all(&diags),
        concat!(
            "c.stp:4:18: error: '@count' needs a statistics aggregate, but 'x' is long\n",
            "   4 |   println(@count(x))\n",
            "     |                  ^\n",
            "  help: values are added to an aggregate with 'x <<< value'\n",
            "c.stp:3:7: note: 'x' is long because of this\n",
            "   3 |   x = 1\n",
            "     |       ^\n",
        )
    );
}

/// The copies in tests/good are the article's scripts verbatim (the first with its
/// italic `*PATH*` placeholder filled in). Skipped when the seed article is not present.
#[test]
fn good_copies_match_the_seed_article() {
    let Ok(dir) = std::fs::read_dir("/work/shared/seed") else {
        eprintln!("skipped: /work/shared/seed not present");
        return;
    };
    let mut blocks = Vec::new();
    for entry in dir.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for (i, block) in text.split("```").enumerate() {
            if i % 2 == 1 && block.contains("probe process") {
                let code = block.trim_start_matches('\n');
                let code = code.strip_prefix("$ cat newstack.stp\n").unwrap_or(code);
                blocks.push(code.replace("*PATH*", "\"./example\""));
            }
        }
    }
    assert_eq!(blocks.len(), 2, "expected the article's two scripts");
    let body = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .trim()
            .to_string()
    };
    assert_eq!(body(&blocks[0]), body(SEED));
    assert_eq!(
        body(&blocks[1]),
        body(include_str!("good/seed_newstack.stp"))
    );
}

/// The checker records what every name and call resolved to, so the back ends do not
/// apply the shadowing rule again: a parameter shadows a global of its name, any other
/// local never does (SystemTap's rule), and a foreach key that names a global is the
/// global.
#[test]
fn names_and_calls_are_recorded_as_resolved() {
    use lang::ast::{Expr, Ident};
    use lang::{Binding, BuiltinId, Callee};
    let src = "global x, k, a
function f(x) { return x + 1 }
probe begin { x = 2; y = f(x); a[1] = y; foreach (k in a) println(k, strlen(\"s\")) }";
    let (sm, script, info, diags) = common::front_end("n.stp", src, None);
    assert!(diags.is_empty(), "{}", sm.render_all(&diags));
    let info = info.expect("checked");
    let mut names: Vec<&Ident> = Vec::new();
    let mut calls: Vec<(String, Option<Callee>)> = Vec::new();
    for item in &script.items {
        let body = match item {
            Item::Function(f) => &f.body,
            Item::Probe(p) => &p.body,
            _ => continue,
        };
        for s in &body.stmts {
            walk_stmt(s, &mut |e: &Expr| match &e.kind {
                ExprKind::Var(id) => names.push(id),
                ExprKind::Call { name, .. } => calls.push((name.name.clone(), info.callee(e))),
                _ => {}
            });
            if let StmtKind::Foreach(fe) = &s.kind {
                names.push(&fe.keys[0]);
            }
        }
    }
    let idents: Vec<(String, u32, Option<Binding>)> = names
        .iter()
        .map(|id| (id.name.clone(), sm.line_col(id.span).1, info.binding(id)))
        .collect();
    let x = Some(Binding::Global(0));
    assert_eq!(
        idents,
        vec![
            ("x".into(), 24, Some(Binding::Local)),
            ("x".into(), 15, x),
            ("y".into(), 22, Some(Binding::Local)),
            ("x".into(), 28, x),
            ("y".into(), 39, Some(Binding::Local)),
            ("k".into(), 67, Some(Binding::Global(1))),
            ("k".into(), 51, Some(Binding::Global(1))),
        ]
    );
    assert_eq!(
        calls,
        vec![
            ("f".into(), Some(Callee::Function(0))),
            ("println".into(), Some(Callee::Builtin(BuiltinId::Println))),
            ("strlen".into(), Some(Callee::Builtin(BuiltinId::Strlen))),
        ]
    );
}
