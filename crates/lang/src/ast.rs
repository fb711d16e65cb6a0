//! The abstract syntax tree of a probe script, as the parser builds it: items (globals,
//! probes, probe aliases, functions), statements and expressions, every node with its
//! [`Span`]. Expressions also carry an [`ExprId`], the key of the checker's side tables
//! ([`crate::check::TypeInfo`]), so later passes can ask "what type is this node".

use crate::span::{FileId, Span};

/// Identifies one expression node; unique across all files of a compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId {
    pub file: FileId,
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Script {
    pub items: Vec<Item>,
}

impl Script {
    /// Appends another file's items (e.g. a tapset) to this script.
    pub fn merge(&mut self, other: Script) {
        self.items.extend(other.items);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Global(GlobalDecl),
    Probe(Probe),
    Alias(ProbeAlias),
    Function(Function),
}

/// One name of a `global` line: `global x`, `global y[100]`, `global a = 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalDecl {
    pub name: Ident,
    /// The maximum number of entries given in `global y[N]` (which also makes it an array).
    pub size: Option<i64>,
    pub init: Option<Literal>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Num(i64),
    Str(String),
}

/// `probe POINT, POINT { body }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub points: Vec<ProbePoint>,
    pub body: Block,
    pub span: Span,
}

/// `probe NAME = POINT, POINT { prologue }`: using `probe NAME { body }` runs the
/// prologue, then the body, with one set of locals, at each of the points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAlias {
    pub name: ProbePoint,
    pub points: Vec<ProbePoint>,
    pub body: Block,
    pub span: Span,
}

/// A dotted probe point as written: `process("./x").function("main.f").return?`.
/// [`crate::probe::ProbeKind`] is its meaning, decided by the checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePoint {
    pub components: Vec<Component>,
    /// `?` suffix: no error if the point does not resolve.
    pub optional: bool,
    /// `!` suffix: optional, and stop trying later points once this one resolves.
    pub sufficient: bool,
    pub span: Span,
}

impl ProbePoint {
    /// The component names joined by dots, without arguments: `process.function.return`.
    pub fn shape(&self) -> String {
        let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
        names.join(".")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub arg: Option<Literal>,
    pub span: Span,
}

/// `function name:type(a:type, b) { body }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: Ident,
    pub ret: Option<TypeAnn>,
    pub params: Vec<Param>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Ident,
    pub ty: Option<TypeAnn>,
}

/// A written type annotation: `:long` or `:string`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeAnn {
    Long,
    String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StmtKind {
    Block(Block),
    Expr(Expr),
    If {
        cond: Expr,
        then: Box<Stmt>,
        els: Option<Box<Stmt>>,
    },
    While {
        cond: Expr,
        body: Box<Stmt>,
    },
    For {
        init: Option<Expr>,
        cond: Option<Expr>,
        step: Option<Expr>,
        body: Box<Stmt>,
    },
    Foreach(Box<Foreach>),
    Break,
    Continue,
    Next,
    Return(Option<Expr>),
    /// `delete a[k]`, `delete a` (a whole array or scalar).
    Delete(Expr),
    /// A lone `;`.
    Empty,
}

/// `foreach (v = [k1, k2] in arr- limit 10) body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreach {
    pub value: Option<Ident>,
    pub keys: Vec<Ident>,
    /// True if the keys were written in brackets (`[k]` rather than `k`).
    pub bracketed: bool,
    pub array: Ident,
    pub sort: Option<Sort>,
    pub limit: Option<Expr>,
    pub body: Stmt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub by: SortBy,
    pub descending: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// `arr+`: by the value.
    Value,
    /// `[a, b+]`: by the key at this index.
    Key(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub id: ExprId,
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    Num(i64),
    Str(String),
    /// `$1` (string: false) or `@1` (string: true), left in the tree when the script
    /// was parsed without arguments.
    ScriptArg {
        index: u32,
        string: bool,
    },
    /// A local or global scalar, or a whole array/stats name where that is allowed.
    Var(Ident),
    /// `arr[k1, k2]`.
    Index {
        array: Ident,
        keys: Vec<Expr>,
    },
    /// A value of the traced program: `$x->a[i]`, `@cast(p, "T")->f`, `$$parms`.
    Target(Box<TargetExpr>),
    /// `&$x->field`: the address instead of the value.
    AddrOf(Box<Expr>),
    /// `@defined($x)`.
    Defined(Box<Expr>),
    /// `@entry($x)`: the value at function entry, used in a `.return` probe.
    Entry(Box<Expr>),
    /// A call to a script function or a built-in.
    Call {
        name: Ident,
        args: Vec<Expr>,
    },
    /// `@count(s)`, `@hist_linear(s, lo, hi, step)`, …
    Stat {
        op: StatOp,
        arg: Box<Expr>,
        params: Vec<Expr>,
    },
    Unary {
        op: UnOp,
        expr: Box<Expr>,
    },
    IncDec {
        inc: bool,
        prefix: bool,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Assign {
        op: Option<BinOp>,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `s <<< v`.
    Aggregate {
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        els: Box<Expr>,
    },
    /// `[k1, k2] in arr` or `k in arr`.
    In {
        keys: Vec<Expr>,
        array: Ident,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetExpr {
    pub base: TargetBase,
    pub path: Vec<PathElem>,
    pub pretty: Pretty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetBase {
    /// `$name` (including `$return` and Go's `$r1`-style names).
    Var(Ident),
    /// `@cast(addr, "type")` or `@cast(addr, "type", "module")`.
    Cast {
        addr: Expr,
        ty: String,
        module: Option<String>,
    },
    /// `$$vars`, `$$parms`, `$$locals`, `$$return`.
    Set(VarSet),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarSet {
    Vars,
    Parms,
    Locals,
    Return,
}

impl VarSet {
    pub fn as_str(self) -> &'static str {
        match self {
            VarSet::Vars => "vars",
            VarSet::Parms => "parms",
            VarSet::Locals => "locals",
            VarSet::Return => "return",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathElem {
    Field(Ident),
    Index(Expr),
}

/// The pretty-printing suffix: none, `$` (one level) or `$$` (nested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pretty {
    None,
    Shallow,
    Deep,
}

impl Pretty {
    pub fn suffix(self) -> &'static str {
        match self {
            Pretty::None => "",
            Pretty::Shallow => "$",
            Pretty::Deep => "$$",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatOp {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Variance,
    HistLog,
    HistLinear,
}

impl StatOp {
    pub fn as_str(self) -> &'static str {
        match self {
            StatOp::Count => "count",
            StatOp::Sum => "sum",
            StatOp::Min => "min",
            StatOp::Max => "max",
            StatOp::Avg => "avg",
            StatOp::Variance => "variance",
            StatOp::HistLog => "hist_log",
            StatOp::HistLinear => "hist_linear",
        }
    }

    pub fn from_name(s: &str) -> Option<StatOp> {
        Some(match s {
            "count" => StatOp::Count,
            "sum" => StatOp::Sum,
            "min" => StatOp::Min,
            "max" => StatOp::Max,
            "avg" => StatOp::Avg,
            "variance" => StatOp::Variance,
            "hist_log" => StatOp::HistLog,
            "hist_linear" => StatOp::HistLinear,
            _ => return None,
        })
    }

    /// How many numbers follow the stats argument (`@hist_linear(s, lo, hi, step)`).
    pub fn param_count(self) -> usize {
        match self {
            StatOp::HistLinear => 3,
            _ => 0,
        }
    }

    pub fn is_hist(self) -> bool {
        matches!(self, StatOp::HistLog | StatOp::HistLinear)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Plus,
    Not,
    BitNot,
}

impl UnOp {
    pub fn as_str(self) -> &'static str {
        match self {
            UnOp::Neg => "-",
            UnOp::Plus => "+",
            UnOp::Not => "!",
            UnOp::BitNot => "~",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Shl,
    Shr,
    BitAnd,
    BitOr,
    BitXor,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `.` string concatenation.
    Concat,
    /// `=~` regular-expression match.
    Match,
    /// `!~`.
    NotMatch,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Concat => ".",
            BinOp::Match => "=~",
            BinOp::NotMatch => "!~",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// Calls `f` on every expression in a statement, outer expressions before inner ones.
pub fn walk_stmt<'a>(s: &'a Stmt, f: &mut impl FnMut(&'a Expr)) {
    match &s.kind {
        StmtKind::Block(b) => b.stmts.iter().for_each(|s| walk_stmt(s, f)),
        StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => walk_expr(e, f),
        StmtKind::If { cond, then, els } => {
            walk_expr(cond, f);
            walk_stmt(then, f);
            if let Some(e) = els {
                walk_stmt(e, f);
            }
        }
        StmtKind::While { cond, body } => {
            walk_expr(cond, f);
            walk_stmt(body, f);
        }
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            for e in [init, cond, step].into_iter().flatten() {
                walk_expr(e, f);
            }
            walk_stmt(body, f);
        }
        StmtKind::Foreach(fe) => {
            if let Some(l) = &fe.limit {
                walk_expr(l, f);
            }
            walk_stmt(&fe.body, f);
        }
        StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Next
        | StmtKind::Return(None)
        | StmtKind::Empty => {}
    }
}

/// Calls `f` on `e` and every expression inside it, outer before inner and left
/// before right. Iterative: a 100,000-term chain of operators needs no deep stack.
pub fn walk_expr<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
    let mut work = vec![e];
    while let Some(e) = work.pop() {
        f(e);
        let from = work.len();
        children(e, &mut |c| work.push(c));
        work[from..].reverse();
    }
}

/// Calls `f` on each expression directly inside `e`, in the order they are
/// evaluated.
pub fn children<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
    match &e.kind {
        ExprKind::Num(_) | ExprKind::Str(_) | ExprKind::ScriptArg { .. } | ExprKind::Var(_) => {}
        ExprKind::Index { keys, .. } | ExprKind::In { keys, .. } => keys.iter().for_each(f),
        ExprKind::Call { args, .. } => args.iter().for_each(f),
        ExprKind::Target(t) => {
            if let TargetBase::Cast { addr, .. } = &t.base {
                f(addr);
            }
            for p in &t.path {
                if let PathElem::Index(i) = p {
                    f(i);
                }
            }
        }
        ExprKind::AddrOf(x) | ExprKind::Defined(x) | ExprKind::Entry(x) => f(x),
        ExprKind::Unary { expr, .. } | ExprKind::IncDec { expr, .. } => f(expr),
        ExprKind::Stat { arg, params, .. } => {
            f(arg);
            params.iter().for_each(f);
        }
        ExprKind::Binary { lhs, rhs, .. }
        | ExprKind::Assign { lhs, rhs, .. }
        | ExprKind::Aggregate { lhs, rhs } => {
            f(lhs);
            f(rhs);
        }
        ExprKind::Ternary { cond, then, els } => {
            f(cond);
            f(then);
            f(els);
        }
    }
}
