//! The pretty printer behind `-d ast`: prints a [`Script`] back as script text that
//! parses to the same tree (parentheses only where precedence needs them, `;` after
//! simple statements so line breaks never matter). `-d types` reuses it with an
//! annotation hook that appends each node's type as a comment.

use crate::ast::*;

/// Prints a whole script.
pub fn print_script(s: &Script) -> String {
    Printer::new(None).script(s)
}

/// Prints one expression.
pub fn print_expr(e: &Expr) -> String {
    let mut p = Printer::new(None);
    p.expr(e, 0);
    p.out
}

/// Called for every expression; a returned string is printed after it as `/* text */`.
pub type Annotate<'a> = &'a dyn Fn(&Expr) -> Option<String>;

pub(crate) struct Printer<'a> {
    out: String,
    indent: usize,
    annotate: Option<Annotate<'a>>,
}

/// Binding strength of each expression form; higher binds tighter.
fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Assign { .. } | ExprKind::Aggregate { .. } => 1,
        ExprKind::Ternary { .. } => 2,
        ExprKind::Binary { op, .. } => binop_prec(*op),
        ExprKind::In { .. } => 8,
        ExprKind::Unary { .. } | ExprKind::AddrOf(_) => 14,
        ExprKind::IncDec { prefix: true, .. } => 14,
        ExprKind::IncDec { prefix: false, .. } => 15,
        _ => 16,
    }
}

fn binop_prec(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 3,
        BinOp::And => 4,
        BinOp::BitOr => 5,
        BinOp::BitXor => 6,
        BinOp::BitAnd => 7,
        BinOp::Eq
        | BinOp::Ne
        | BinOp::Lt
        | BinOp::Le
        | BinOp::Gt
        | BinOp::Ge
        | BinOp::Match
        | BinOp::NotMatch => 9,
        BinOp::Shl | BinOp::Shr => 10,
        BinOp::Concat => 11,
        BinOp::Add | BinOp::Sub => 12,
        BinOp::Mul | BinOp::Div | BinOp::Mod => 13,
    }
}

/// A string literal in script syntax.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number literal that lexes back to the same value (negatives as 64-bit hex).
fn number(n: i64) -> String {
    if n < 0 {
        format!("0x{:x}", n as u64)
    } else {
        n.to_string()
    }
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Num(n) if *n < 0 => format!("-{}", n.unsigned_abs()),
        Literal::Num(n) => n.to_string(),
        Literal::Str(s) => quote(s),
    }
}

/// A probe point as written: `process("x").function("f").return?`.
pub fn print_probe_point(p: &ProbePoint) -> String {
    let mut out = String::new();
    for (i, c) in p.components.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&c.name);
        if let Some(a) = &c.arg {
            out.push_str(&format!("({})", literal(a)));
        }
    }
    if p.sufficient {
        out.push('!');
    } else if p.optional {
        out.push('?');
    }
    out
}

fn type_ann(t: Option<TypeAnn>) -> &'static str {
    match t {
        None => "",
        Some(TypeAnn::Long) => ":long",
        Some(TypeAnn::String) => ":string",
    }
}

impl<'a> Printer<'a> {
    pub(crate) fn new(annotate: Option<Annotate<'a>>) -> Printer<'a> {
        Printer {
            out: String::new(),
            indent: 0,
            annotate,
        }
    }

    pub(crate) fn script(mut self, s: &Script) -> String {
        for item in &s.items {
            self.item(item);
        }
        self.out
    }

    fn line_start(&mut self) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
    }

    fn points(&mut self, ps: &[ProbePoint]) {
        let v: Vec<String> = ps.iter().map(print_probe_point).collect();
        self.out.push_str(&v.join(", "));
    }

    pub(crate) fn item(&mut self, item: &Item) {
        match item {
            Item::Global(g) => {
                self.out.push_str("global ");
                self.out.push_str(&g.name.name);
                if let Some(n) = g.size {
                    self.out.push_str(&format!("[{n}]"));
                }
                if let Some(l) = &g.init {
                    self.out.push_str(&format!(" = {}", literal(l)));
                }
                self.out.push('\n');
            }
            Item::Probe(p) => {
                self.out.push_str("probe ");
                self.points(&p.points);
                self.out.push(' ');
                self.block(&p.body);
                self.out.push('\n');
            }
            Item::Alias(a) => {
                self.out.push_str("probe ");
                self.out.push_str(&print_probe_point(&a.name));
                self.out.push_str(" = ");
                self.points(&a.points);
                self.out.push(' ');
                self.block(&a.body);
                self.out.push('\n');
            }
            Item::Function(f) => {
                let params: Vec<String> = f
                    .params
                    .iter()
                    .map(|p| format!("{}{}", p.name.name, type_ann(p.ty)))
                    .collect();
                self.out.push_str(&format!(
                    "function {}{}({}) ",
                    f.name.name,
                    type_ann(f.ret),
                    params.join(", ")
                ));
                self.block(&f.body);
                self.out.push('\n');
            }
        }
    }

    fn block(&mut self, b: &Block) {
        self.out.push_str("{\n");
        self.indent += 1;
        for s in &b.stmts {
            self.line_start();
            self.stmt(s);
            self.out.push('\n');
        }
        self.indent -= 1;
        self.line_start();
        self.out.push('}');
    }

    /// A statement nested under `if`/`while`/…: blocks stay on the line, others indent.
    fn nested(&mut self, s: &Stmt) {
        if let StmtKind::Block(b) = &s.kind {
            self.out.push(' ');
            self.block(b);
        } else {
            self.out.push('\n');
            self.indent += 1;
            self.line_start();
            self.stmt(s);
            self.indent -= 1;
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => {
                self.expr(e, 0);
                self.out.push(';');
            }
            StmtKind::If { cond, then, els } => {
                self.out.push_str("if (");
                self.expr(cond, 0);
                self.out.push(')');
                self.nested(then);
                if let Some(e) = els {
                    if matches!(then.kind, StmtKind::Block(_)) {
                        self.out.push(' ');
                    } else {
                        self.out.push('\n');
                        self.line_start();
                    }
                    self.out.push_str("else");
                    if matches!(e.kind, StmtKind::If { .. }) {
                        self.out.push(' ');
                        self.stmt(e);
                    } else {
                        self.nested(e);
                    }
                }
            }
            StmtKind::While { cond, body } => {
                self.out.push_str("while (");
                self.expr(cond, 0);
                self.out.push(')');
                self.nested(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                self.out.push_str("for (");
                if let Some(e) = init {
                    self.expr(e, 0);
                }
                self.out.push_str("; ");
                if let Some(e) = cond {
                    self.expr(e, 0);
                }
                self.out.push_str("; ");
                if let Some(e) = step {
                    self.expr(e, 0);
                }
                self.out.push(')');
                self.nested(body);
            }
            StmtKind::Foreach(f) => {
                self.out.push_str("foreach (");
                let mark = |by: SortBy| match f.sort {
                    Some(s) if s.by == by => {
                        if s.descending {
                            "-"
                        } else {
                            "+"
                        }
                    }
                    _ => "",
                };
                if let Some(v) = &f.value {
                    self.out.push_str(&format!("{} = ", v.name));
                }
                let keys: Vec<String> = f
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("{}{}", k.name, mark(SortBy::Key(i))))
                    .collect();
                if f.bracketed {
                    self.out.push_str(&format!("[{}]", keys.join(", ")));
                } else {
                    self.out.push_str(&keys.join(", "));
                }
                self.out
                    .push_str(&format!(" in {}{}", f.array.name, mark(SortBy::Value)));
                if let Some(l) = &f.limit {
                    self.out.push_str(" limit ");
                    self.expr(l, 0);
                }
                self.out.push(')');
                self.nested(&f.body);
            }
            StmtKind::Break => self.out.push_str("break;"),
            StmtKind::Continue => self.out.push_str("continue;"),
            StmtKind::Next => self.out.push_str("next;"),
            StmtKind::Return(None) => self.out.push_str("return;"),
            StmtKind::Return(Some(e)) => {
                self.out.push_str("return ");
                self.expr(e, 0);
                self.out.push(';');
            }
            StmtKind::Delete(e) => {
                self.out.push_str("delete ");
                self.expr(e, 0);
                self.out.push(';');
            }
            StmtKind::Empty => self.out.push(';'),
        }
    }

    fn list(&mut self, es: &[Expr]) {
        for (i, e) in es.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.expr(e, 0);
        }
    }

    /// Prints `e`, parenthesised if it binds looser than `min`.
    pub(crate) fn expr(&mut self, e: &Expr, min: u8) {
        let paren = prec(e) < min;
        if paren {
            self.out.push('(');
        }
        self.expr_inner(e);
        if paren {
            self.out.push(')');
        }
        if let Some(text) = self.annotate.and_then(|f| f(e)) {
            self.out.push_str(&format!(" /* {text} */"));
        }
    }

    /// Unary operators: a space keeps `- -x` from lexing as `--x`.
    fn prefix(&mut self, op: &str, e: &Expr) {
        self.out.push_str(op);
        let mut inner = Printer::new(self.annotate);
        inner.indent = self.indent;
        inner.expr(e, 14);
        if inner.out.starts_with(['-', '+', '&', '!', '~']) {
            self.out.push(' ');
        }
        self.out.push_str(&inner.out);
    }

    fn expr_inner(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Num(n) => self.out.push_str(&number(*n)),
            ExprKind::Str(s) => self.out.push_str(&quote(s)),
            ExprKind::ScriptArg { index, string } => {
                self.out
                    .push_str(&format!("{}{index}", if *string { "@" } else { "$" }));
            }
            ExprKind::Var(v) => self.out.push_str(&v.name),
            ExprKind::Index { array, keys } => {
                self.out.push_str(&array.name);
                self.out.push('[');
                self.list(keys);
                self.out.push(']');
            }
            ExprKind::Target(t) => self.target(t),
            ExprKind::AddrOf(x) => self.prefix("&", x),
            ExprKind::Defined(x) => {
                self.out.push_str("@defined(");
                self.expr(x, 0);
                self.out.push(')');
            }
            ExprKind::Entry(x) => {
                self.out.push_str("@entry(");
                self.expr(x, 0);
                self.out.push(')');
            }
            ExprKind::Call { name, args } => {
                self.out.push_str(&name.name);
                self.out.push('(');
                self.list(args);
                self.out.push(')');
            }
            ExprKind::Stat { op, arg, params } => {
                self.out.push_str(&format!("@{}(", op.as_str()));
                self.expr(arg, 0);
                for p in params {
                    self.out.push_str(", ");
                    self.expr(p, 0);
                }
                self.out.push(')');
            }
            ExprKind::Unary { op, expr } => self.prefix(op.as_str(), expr),
            ExprKind::IncDec { inc, prefix, expr } => {
                let op = if *inc { "++" } else { "--" };
                if *prefix {
                    self.prefix(op, expr);
                } else {
                    self.expr(expr, 15);
                    self.out.push_str(op);
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let p = binop_prec(*op);
                self.expr(lhs, p);
                self.out.push_str(&format!(" {} ", op.as_str()));
                self.expr(rhs, p + 1);
            }
            ExprKind::Assign { op, lhs, rhs } => {
                // A ternary on the left needs parentheses: its false branch would
                // otherwise swallow the assignment.
                self.expr(lhs, 3);
                let op = op.map_or(String::new(), |o| o.as_str().to_string());
                self.out.push_str(&format!(" {op}= "));
                self.expr(rhs, 1);
            }
            ExprKind::Aggregate { lhs, rhs } => {
                self.expr(lhs, 3);
                self.out.push_str(" <<< ");
                self.expr(rhs, 1);
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond, 3);
                self.out.push_str(" ? ");
                self.expr(then, 0);
                self.out.push_str(" : ");
                self.expr(els, 0);
            }
            ExprKind::In { keys, array } => {
                self.out.push('[');
                self.list(keys);
                self.out.push_str(&format!("] in {}", array.name));
            }
        }
    }

    fn target(&mut self, t: &TargetExpr) {
        match &t.base {
            TargetBase::Var(v) => self.out.push_str(&format!("${}", v.name)),
            TargetBase::Cast { addr, ty, module } => {
                self.out.push_str("@cast(");
                self.expr(addr, 0);
                self.out.push_str(&format!(", {}", quote(ty)));
                if let Some(m) = module {
                    self.out.push_str(&format!(", {}", quote(m)));
                }
                self.out.push(')');
            }
            TargetBase::Set(s) => {
                self.out.push_str(&format!("$${}", s.as_str()));
                if t.pretty == Pretty::Deep {
                    self.out.push('$');
                }
                return;
            }
        }
        for p in &t.path {
            match p {
                PathElem::Field(f) => self.out.push_str(&format!("->{}", f.name)),
                PathElem::Index(i) => {
                    self.out.push('[');
                    self.expr(i, 0);
                    self.out.push(']');
                }
            }
        }
        self.out.push_str(t.pretty.suffix());
    }
}
