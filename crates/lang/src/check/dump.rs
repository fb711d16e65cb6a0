//! The `-d types` dump: every global, function and probe with its resolved points
//! and typed locals, then the script with each variable, call and context expression
//! annotated with its type.

use super::*;
use crate::print::{Printer, print_probe_point};

fn var_line(v: &VarInfo) -> String {
    let ty = v.ty.map_or("?".to_string(), |t| t.to_string());
    match &v.keys {
        Some(keys) => {
            let k: Vec<String> = keys
                .iter()
                .map(|k| k.map_or("?".to_string(), |t| t.to_string()))
                .collect();
            format!("{}[{}]: {ty}", v.name, k.join(", "))
        }
        None => format!("{}: {ty}", v.name),
    }
}

/// The `-d types` dump: every global, function and probe with its resolved points and
/// typed locals, then the script with each variable, call and context expression
/// annotated with its type.
pub fn dump_types(script: &Script, info: &TypeInfo) -> String {
    let mut out = String::new();
    for g in &info.globals {
        out.push_str(&format!("global {}\n", var_line(g)));
    }
    for f in &info.functions {
        let params: Vec<String> = f.params.iter().map(var_line).collect();
        let ret = f.ret.map_or("void".to_string(), |t| t.to_string());
        out.push_str(&format!(
            "function {}({}): {ret}\n",
            f.name,
            params.join(", ")
        ));
        for l in f.locals.iter().skip(f.params.len()) {
            out.push_str(&format!("  local {}\n", var_line(l)));
        }
    }
    for p in &info.probes {
        if let Some(Item::Probe(def)) = script.items.get(p.item) {
            let pts: Vec<String> = def.points.iter().map(print_probe_point).collect();
            out.push_str(&format!("probe {}\n", pts.join(", ")));
        }
        for rp in &p.points {
            out.push_str(&format!("  point {:?}\n", rp.kind));
            for l in &rp.locations {
                let line = l.line.map_or(String::new(), |n| format!(":{n}"));
                out.push_str(&format!(
                    "    at {} {}{line} {:#x}\n",
                    l.function,
                    l.file.as_deref().unwrap_or("?"),
                    l.address
                ));
            }
        }
        for l in &p.locals {
            out.push_str(&format!("  local {}\n", var_line(l)));
        }
    }
    out.push_str("---\n");
    let annotate = |e: &Expr| -> Option<String> {
        let interesting = matches!(
            e.kind,
            ExprKind::Var(_)
                | ExprKind::Index { .. }
                | ExprKind::Target(_)
                | ExprKind::Call { .. }
                | ExprKind::Stat { .. }
        );
        if !interesting {
            return None;
        }
        let ty = info.exprs.get(&e.id).map(|t| t.to_string());
        match (ty, info.go_types.get(&e.id)) {
            (Some(t), Some(g)) => Some(format!("{t} ({})", g.name)),
            (Some(t), None) => Some(t),
            (None, Some(g)) => Some(format!("({})", g.name)),
            (None, None) => None,
        }
    };
    out.push_str(&Printer::new(Some(&annotate)).script(script));
    out
}
