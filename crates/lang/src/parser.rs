//! The parser: tokens to [`Script`]. Recursive descent with SystemTap's operator
//! precedence (loosest first): assignment and `<<<` (right-assoc), `?:`, `||`, `&&`,
//! `|`, `^`, `&`, `in`, comparisons and `=~`, shifts, `.` concatenation, `+ -`,
//! `* / %`, unary, `++/--`, postfix (`->`, `[]`, calls). Semicolons between statements
//! are optional, as in stap. On a syntax error it reports, skips to the next statement
//! (a `;`, a `}` or a new line) or the next top-level item, and carries on.

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::lexer::{Kw, Tok, Token, lex};
use crate::span::{FileId, Span};

/// How to parse: with the command-line script arguments, `$1`/`@1` are replaced by
/// literals at parse time (as stap does); without them they stay [`ExprKind::ScriptArg`].
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub args: Option<Vec<String>>,
}

/// Parses one file. Always returns a script (possibly partial) and all diagnostics.
pub fn parse(file: FileId, src: &str, opts: &ParseOptions) -> (Script, Vec<Diagnostic>) {
    let (toks, diags) = lex(file, src);
    let mut p = Parser {
        src,
        file,
        toks,
        pos: 0,
        diags,
        next_id: 0,
        args: opts.args.as_deref(),
        depth: 0,
        heights: Vec::new(),
    };
    let script = p.script();
    (script, p.diags)
}

/// Marks that a diagnostic was pushed and the caller should recover.
struct Fatal;
type PResult<T> = Result<T, Fatal>;

struct Parser<'a> {
    src: &'a str,
    file: FileId,
    toks: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    next_id: u32,
    args: Option<&'a [String]>,
    /// Current nesting of expressions and statements, bounded by [`MAX_DEPTH`].
    depth: u32,
    /// The height of every expression built, by its id: the longest path down to a
    /// leaf, bounded by [`MAX_EXPR_HEIGHT`].
    heights: Vec<u32>,
}

/// Deeper nesting than this is refused, so that hostile input cannot overflow the stack
/// of the recursive parser, checker or printer.
pub const MAX_DEPTH: u32 = 100;

/// Taller expressions than this are refused. A chain of operators (`1+1+…`, `a.b.c…`)
/// is parsed in a loop, with no nesting, but it is a tree as tall as it is long, and
/// every later pass (checker, printer, both back ends, even dropping the tree) walks
/// it recursively: each needs well under 2 KiB of stack a level in a debug build, so
/// this bound keeps them within a quarter of an 8 MiB stack.
pub const MAX_EXPR_HEIGHT: u32 = 1000;

/// Binary operator levels from loosest to tightest, below `&&` and excluding `in`.
const LEVELS: &[&[(&str, BinOp)]] = &[
    &[("|", BinOp::BitOr)],
    &[("^", BinOp::BitXor)],
    &[("&", BinOp::BitAnd)],
    &[],
    &[
        ("==", BinOp::Eq),
        ("!=", BinOp::Ne),
        ("<=", BinOp::Le),
        (">=", BinOp::Ge),
        ("<", BinOp::Lt),
        (">", BinOp::Gt),
        ("=~", BinOp::Match),
        ("!~", BinOp::NotMatch),
    ],
    &[("<<", BinOp::Shl), (">>", BinOp::Shr)],
    &[(".", BinOp::Concat)],
    &[("+", BinOp::Add), ("-", BinOp::Sub)],
    &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Mod)],
];
/// Index in [`LEVELS`] of the (empty) slot where `in` is parsed.
const IN_LEVEL: usize = 3;

const ASSIGN_OPS: &[(&str, Option<BinOp>)] = &[
    ("=", None),
    ("+=", Some(BinOp::Add)),
    ("-=", Some(BinOp::Sub)),
    ("*=", Some(BinOp::Mul)),
    ("/=", Some(BinOp::Div)),
    ("%=", Some(BinOp::Mod)),
    ("<<=", Some(BinOp::Shl)),
    (">>=", Some(BinOp::Shr)),
    ("&=", Some(BinOp::BitAnd)),
    ("|=", Some(BinOp::BitOr)),
    ("^=", Some(BinOp::BitXor)),
    (".=", Some(BinOp::Concat)),
];

impl<'a> Parser<'a> {
    // ---- token helpers ----

    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let i = (self.pos + n).min(self.toks.len() - 1);
        &self.toks[i].tok
    }

    fn span(&self) -> Span {
        self.toks[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: Kw) -> bool {
        matches!(self.peek(), Tok::Kw(k) if *k == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.bump();
        }
        yes
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.bump();
        }
        yes
    }

    fn error<T>(&mut self, span: Span, msg: impl Into<String>) -> PResult<T> {
        self.diags.push(Diagnostic::error(span, msg));
        Err(Fatal)
    }

    fn expected<T>(&mut self, what: &str) -> PResult<T> {
        let msg = format!("expected {what}, found {}", self.peek());
        let span = self.span();
        self.error(span, msg)
    }

    fn expect_op(&mut self, op: &str) -> PResult<Span> {
        if self.is_op(op) {
            Ok(self.bump().span)
        } else {
            self.expected(&format!("'{op}'"))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => self.expected(what),
        }
    }

    /// True if a line break separates the previous token from the current one.
    fn at_line_start(&self) -> bool {
        if self.pos == 0 {
            return true;
        }
        let a = self.toks[self.pos - 1].span.end as usize;
        let b = self.toks[self.pos].span.start as usize;
        self.src.get(a..b).is_some_and(|s| s.contains('\n'))
    }

    fn mk(&mut self, kind: ExprKind, span: Span) -> Expr {
        let id = ExprId {
            file: self.file,
            index: self.next_id,
        };
        self.next_id += 1;
        let e = Expr { id, kind, span };
        let mut below = 0;
        crate::ast::children(&e, &mut |c| below = below.max(self.height(c)));
        let i = id.index as usize;
        if self.heights.len() <= i {
            self.heights.resize(i + 1, 0);
        }
        self.heights[i] = below + 1;
        e
    }

    fn height(&self, e: &Expr) -> u32 {
        self.heights.get(e.id.index as usize).copied().unwrap_or(1)
    }

    // ---- recovery ----

    /// Skips to the start of the next statement: past a `;`, before a `}` closing the
    /// current block, or before the first token of a new line.
    fn sync_stmt(&mut self, start: usize) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Op(";") if depth == 0 => {
                    self.bump();
                    return;
                }
                Tok::Op("}") if depth == 0 => return,
                Tok::Kw(Kw::Probe | Kw::Function | Kw::Global) => return,
                _ => {}
            }
            if depth == 0 && self.pos > start && self.at_line_start() {
                return;
            }
            match self.peek() {
                Tok::Op("{" | "(" | "[") => depth += 1,
                // An error inside parentheses leaves us past their opening: never go below 0.
                Tok::Op("}" | ")" | "]") => depth = (depth - 1).max(0),
                _ => {}
            }
            self.bump();
        }
    }

    fn sync_item(&mut self) {
        while !matches!(
            self.peek(),
            Tok::Eof | Tok::Kw(Kw::Probe | Kw::Function | Kw::Global)
        ) {
            self.bump();
        }
    }

    // ---- items ----

    fn script(&mut self) -> Script {
        let mut items = Vec::new();
        loop {
            let r = match self.peek() {
                Tok::Eof => break,
                Tok::Kw(Kw::Global) => self.globals(&mut items),
                Tok::Kw(Kw::Probe) => self.probe().map(|i| items.push(i)),
                Tok::Kw(Kw::Function) => self.function().map(|f| items.push(Item::Function(f))),
                _ => self.expected("'probe', 'global' or 'function'"),
            };
            if r.is_err() {
                // Step over the offending token so recovery always makes progress.
                if matches!(self.peek(), Tok::Kw(Kw::Probe | Kw::Function | Kw::Global))
                    && self.diags.last().is_some_and(|d| d.span == self.span())
                {
                    self.bump();
                }
                self.sync_item();
            }
        }
        if items.is_empty() && self.diags.is_empty() {
            let at = Span::new(self.file, 0, 0);
            self.diags.push(
                Diagnostic::error(at, "the script is empty: it has no probes")
                    .with_help("a script has at least one 'probe POINT { … }'"),
            );
        }
        Script { items }
    }

    fn globals(&mut self, items: &mut Vec<Item>) -> PResult<()> {
        self.bump();
        loop {
            let name = self.ident("a global variable name")?;
            let mut span = name.span;
            let mut size = None;
            if self.eat_op("[") {
                match self.peek().clone() {
                    Tok::Num(n) if n > 0 => {
                        self.bump();
                        size = Some(n);
                    }
                    _ => return self.expected("a positive array size"),
                }
                span = span.to(self.expect_op("]")?);
            }
            let mut init = None;
            if self.eat_op("=") {
                init = Some(self.literal("a number or string initialiser")?);
                span = span.to(self.prev_span());
            }
            items.push(Item::Global(GlobalDecl {
                name,
                size,
                init,
                span,
            }));
            if !self.eat_op(",") {
                break;
            }
        }
        self.eat_op(";");
        Ok(())
    }

    fn literal(&mut self, what: &str) -> PResult<Literal> {
        let neg = self.eat_op("-");
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                Ok(Literal::Num(if neg { n.wrapping_neg() } else { n }))
            }
            Tok::Str(s) if !neg => {
                self.bump();
                Ok(Literal::Str(s))
            }
            Tok::ArgNum(i) | Tok::ArgStr(i) if !neg => {
                let string = matches!(self.peek(), Tok::ArgStr(_));
                let span = self.bump().span;
                match self.script_arg(i, string, span)? {
                    ExprKind::Num(n) => Ok(Literal::Num(n)),
                    ExprKind::Str(s) => Ok(Literal::Str(s)),
                    _ => self.error(
                        span,
                        format!(
                            "script argument '{}{i}' here needs the script's arguments",
                            if string { "@" } else { "$" }
                        ),
                    ),
                }
            }
            _ => self.expected(what),
        }
    }

    fn probe(&mut self) -> PResult<Item> {
        let start = self.bump().span;
        let first = self.probe_point()?;
        if self.is_op("=") || self.is_op("+=") {
            self.bump();
            let mut points = vec![self.probe_point()?];
            while self.eat_op(",") {
                points.push(self.probe_point()?);
            }
            let body = self.block()?;
            return Ok(Item::Alias(ProbeAlias {
                span: start.to(body.span),
                name: first,
                points,
                body,
            }));
        }
        let mut points = vec![first];
        while self.eat_op(",") {
            points.push(self.probe_point()?);
        }
        let body = self.block()?;
        Ok(Item::Probe(Probe {
            span: start.to(body.span),
            points,
            body,
        }))
    }

    fn probe_point(&mut self) -> PResult<ProbePoint> {
        let start = self.span();
        let mut components = Vec::new();
        loop {
            let cstart = self.span();
            let name = match self.peek().clone() {
                Tok::Ident(s) => s,
                Tok::Kw(k) => k.as_str().to_string(),
                Tok::Op("*") => "*".to_string(),
                _ => return self.expected("a probe point"),
            };
            self.bump();
            let mut arg = None;
            if self.eat_op("(") {
                arg = Some(self.literal("a string or number")?);
                self.expect_op(")")?;
            }
            components.push(Component {
                name,
                arg,
                span: cstart.to(self.prev_span()),
            });
            if !self.eat_op(".") {
                break;
            }
        }
        let mut optional = false;
        let mut sufficient = false;
        if self.eat_op("?") {
            optional = true;
        } else if self.eat_op("!") {
            optional = true;
            sufficient = true;
        }
        Ok(ProbePoint {
            components,
            optional,
            sufficient,
            span: start.to(self.prev_span()),
        })
    }

    fn type_ann(&mut self) -> PResult<Option<TypeAnn>> {
        if !self.eat_op(":") {
            return Ok(None);
        }
        match self.peek().clone() {
            Tok::Ident(s) if s == "long" => {
                self.bump();
                Ok(Some(TypeAnn::Long))
            }
            Tok::Ident(s) if s == "string" => {
                self.bump();
                Ok(Some(TypeAnn::String))
            }
            _ => self.expected("'long' or 'string'"),
        }
    }

    fn function(&mut self) -> PResult<Function> {
        let start = self.bump().span;
        let name = self.ident("a function name")?;
        let ret = self.type_ann()?;
        self.expect_op("(")?;
        let mut params = Vec::new();
        if !self.is_op(")") {
            loop {
                let name = self.ident("a parameter name")?;
                let ty = self.type_ann()?;
                params.push(Param { name, ty });
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        self.expect_op(")")?;
        let body = self.block()?;
        Ok(Function {
            span: start.to(body.span),
            name,
            ret,
            params,
            body,
        })
    }

    // ---- statements ----

    fn block(&mut self) -> PResult<Block> {
        let open = self.expect_op("{")?;
        let mut stmts = Vec::new();
        loop {
            match self.peek() {
                Tok::Op("}") => {
                    let close = self.bump().span;
                    return Ok(Block {
                        stmts,
                        span: open.to(close),
                    });
                }
                Tok::Eof | Tok::Kw(Kw::Probe | Kw::Function | Kw::Global) => {
                    return self.error(open, "unclosed '{'");
                }
                _ => {}
            }
            let start = self.pos;
            match self.stmt() {
                Ok(s) => stmts.push(s),
                Err(Fatal) => self.sync_stmt(start),
            }
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            let span = self.span();
            return self.error(span, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        self.nested(Self::stmt_inner)
    }

    fn stmt_inner(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Tok::Op("{") => StmtKind::Block(self.block()?),
            Tok::Op(";") => {
                self.bump();
                StmtKind::Empty
            }
            Tok::Kw(Kw::If) => {
                self.bump();
                self.expect_op("(")?;
                let cond = self.expr()?;
                self.expect_op(")")?;
                let then = Box::new(self.stmt()?);
                let els = if self.eat_kw(Kw::Else) {
                    Some(Box::new(self.stmt()?))
                } else {
                    None
                };
                StmtKind::If { cond, then, els }
            }
            Tok::Kw(Kw::While) => {
                self.bump();
                self.expect_op("(")?;
                let cond = self.expr()?;
                self.expect_op(")")?;
                let body = Box::new(self.stmt()?);
                StmtKind::While { cond, body }
            }
            Tok::Kw(Kw::For) => {
                self.bump();
                self.expect_op("(")?;
                let init = self.opt_expr(";")?;
                self.expect_op(";")?;
                let cond = self.opt_expr(";")?;
                self.expect_op(";")?;
                let step = self.opt_expr(")")?;
                self.expect_op(")")?;
                let body = Box::new(self.stmt()?);
                StmtKind::For {
                    init,
                    cond,
                    step,
                    body,
                }
            }
            Tok::Kw(Kw::Foreach) => StmtKind::Foreach(Box::new(self.foreach()?)),
            Tok::Kw(Kw::Break) => {
                self.bump();
                StmtKind::Break
            }
            Tok::Kw(Kw::Continue) => {
                self.bump();
                StmtKind::Continue
            }
            Tok::Kw(Kw::Next) => {
                self.bump();
                StmtKind::Next
            }
            Tok::Kw(Kw::Return) => {
                self.bump();
                if self.is_op(";") || self.is_op("}") || matches!(self.peek(), Tok::Eof) {
                    StmtKind::Return(None)
                } else {
                    StmtKind::Return(Some(self.expr()?))
                }
            }
            Tok::Kw(Kw::Delete) => {
                self.bump();
                StmtKind::Delete(self.expr()?)
            }
            Tok::Kw(Kw::Else) => {
                return self.error(start, "'else' without a matching 'if'");
            }
            _ => StmtKind::Expr(self.expr()?),
        };
        let span = start.to(self.prev_span());
        // A statement ends at a `;`, a `}`, the end of the line or the end of the file.
        if !self.eat_op(";")
            && !self.is_op("}")
            && !matches!(self.peek(), Tok::Eof)
            && !self.at_line_start()
            && matches!(
                kind,
                StmtKind::Expr(_) | StmtKind::Return(_) | StmtKind::Delete(_)
            )
        {
            return self.expected("';' or a new line after the statement");
        }
        Ok(Stmt { kind, span })
    }

    fn opt_expr(&mut self, end: &str) -> PResult<Option<Expr>> {
        if self.is_op(end) {
            Ok(None)
        } else {
            self.expr().map(Some)
        }
    }

    /// Reads an optional `+`/`-` sort marker.
    fn sort_mark(&mut self) -> Option<bool> {
        if self.eat_op("+") {
            Some(false)
        } else if self.eat_op("-") {
            Some(true)
        } else {
            None
        }
    }

    fn foreach(&mut self) -> PResult<Foreach> {
        let kw = self.bump().span;
        self.expect_op("(")?;
        let mut sort = None;
        let mut set_sort = |p: &mut Self, by: SortBy, mark: Option<bool>| -> PResult<()> {
            if let Some(descending) = mark {
                if sort.is_some() {
                    let s = p.prev_span();
                    return p.error(s, "only one sort key is allowed in 'foreach'");
                }
                sort = Some(Sort { by, descending });
            }
            Ok(())
        };
        let mut value = None;
        if matches!(self.peek(), Tok::Ident(_)) && matches!(self.peek_at(1), Tok::Op("=")) {
            value = Some(self.ident("a variable")?);
            self.bump();
        }
        let mut keys = Vec::new();
        let bracketed = self.eat_op("[");
        if bracketed {
            loop {
                keys.push(self.ident("a key variable")?);
                let mark = self.sort_mark();
                set_sort(self, SortBy::Key(keys.len() - 1), mark)?;
                if !self.eat_op(",") {
                    break;
                }
            }
            self.expect_op("]")?;
        } else {
            keys.push(self.ident("a key variable or '['")?);
            let mark = self.sort_mark();
            set_sort(self, SortBy::Key(0), mark)?;
        }
        if !self.eat_kw(Kw::In) {
            return self.expected("'in'");
        }
        let array = self.ident("an array name")?;
        let mark = self.sort_mark();
        set_sort(self, SortBy::Value, mark)?;
        let limit = if self.eat_kw(Kw::Limit) {
            Some(self.expr()?)
        } else {
            None
        };
        let close = self.expect_op(")")?;
        let _ = kw.to(close);
        let body = self.stmt()?;
        Ok(Foreach {
            value,
            keys,
            bracketed,
            array,
            sort,
            limit,
            body,
        })
    }

    // ---- expressions ----

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.nested(Self::expr_inner)
    }

    fn expr_inner(&mut self) -> PResult<Expr> {
        let lhs = self.ternary()?;
        if let Tok::Op(op) = *self.peek() {
            if op == "<<<" {
                self.bump();
                let rhs = self.expr()?;
                let span = lhs.span.to(rhs.span);
                return Ok(self.mk(
                    ExprKind::Aggregate {
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                ));
            }
            if let Some(&(_, bop)) = ASSIGN_OPS.iter().find(|(o, _)| *o == op) {
                self.bump();
                let rhs = self.expr()?;
                let span = lhs.span.to(rhs.span);
                return Ok(self.mk(
                    ExprKind::Assign {
                        op: bop,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                ));
            }
        }
        Ok(lhs)
    }

    fn ternary(&mut self) -> PResult<Expr> {
        let cond = self.logical(true)?;
        if !self.eat_op("?") {
            return Ok(cond);
        }
        let then = self.expr()?;
        self.expect_op(":")?;
        // As in stap, the false branch is a full expression: `c ? a : b = 1` assigns.
        let els = self.expr()?;
        let span = cond.span.to(els.span);
        Ok(self.mk(
            ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                els: Box::new(els),
            },
            span,
        ))
    }

    fn logical(&mut self, or: bool) -> PResult<Expr> {
        let (tok, op) = if or {
            ("||", BinOp::Or)
        } else {
            ("&&", BinOp::And)
        };
        let mut lhs = if or {
            self.logical(false)?
        } else {
            self.level(0)?
        };
        while self.eat_op(tok) {
            let rhs = if or {
                self.logical(false)?
            } else {
                self.level(0)?
            };
            lhs = self.binary(op, lhs, rhs)?;
        }
        Ok(lhs)
    }

    /// `lhs op rhs`, unless the tree would grow taller than [`MAX_EXPR_HEIGHT`].
    fn binary(&mut self, op: BinOp, lhs: Expr, rhs: Expr) -> PResult<Expr> {
        let span = lhs.span.to(rhs.span);
        if self.height(&lhs).max(self.height(&rhs)) >= MAX_EXPR_HEIGHT {
            let at = Span {
                file: span.file,
                start: lhs.span.end,
                end: rhs.span.start.max(lhs.span.end),
            };
            let d = Diagnostic::error(
                at,
                format!("this expression is more than {MAX_EXPR_HEIGHT} operators deep"),
            )
            .with_help("compute it in parts, with local variables");
            self.diags.push(d);
            return Err(Fatal);
        }
        Ok(self.mk(
            ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            },
            span,
        ))
    }

    fn level(&mut self, n: usize) -> PResult<Expr> {
        if n == LEVELS.len() {
            return self.unary();
        }
        if n == IN_LEVEL {
            return self.array_in();
        }
        let mut lhs = self.level(n + 1)?;
        'outer: loop {
            for &(tok, op) in LEVELS[n] {
                // `&&`, `||` and `<<<` are single tokens, so `&` here never eats them.
                if self.is_op(tok) {
                    self.bump();
                    let rhs = self.level(n + 1)?;
                    lhs = self.binary(op, lhs, rhs)?;
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn array_in(&mut self) -> PResult<Expr> {
        let start = self.pos;
        if self.is_op("[") {
            // `[k1, k2] in arr`: a bracketed key list can only start an `in` test.
            let open = self.bump().span;
            let mut keys = Vec::new();
            if !self.is_op("]") {
                loop {
                    keys.push(self.expr()?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
            }
            self.expect_op("]")?;
            if !self.eat_kw(Kw::In) {
                self.pos = start;
                return self.expected("an expression");
            }
            let array = self.ident("an array name")?;
            let span = open.to(array.span);
            return Ok(self.mk(ExprKind::In { keys, array }, span));
        }
        let lhs = self.level(IN_LEVEL + 1)?;
        if self.eat_kw(Kw::In) {
            let array = self.ident("an array name")?;
            let span = lhs.span.to(array.span);
            return Ok(self.mk(
                ExprKind::In {
                    keys: vec![lhs],
                    array,
                },
                span,
            ));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.nested(Self::unary_inner)
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let start = self.span();
        let op = match self.peek() {
            Tok::Op("-") => Some(UnOp::Neg),
            Tok::Op("+") => Some(UnOp::Plus),
            Tok::Op("!") => Some(UnOp::Not),
            Tok::Op("~") => Some(UnOp::BitNot),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let e = self.unary()?;
            let span = start.to(e.span);
            return Ok(self.mk(
                ExprKind::Unary {
                    op,
                    expr: Box::new(e),
                },
                span,
            ));
        }
        if self.eat_op("&") {
            let e = self.unary()?;
            let span = start.to(e.span);
            return Ok(self.mk(ExprKind::AddrOf(Box::new(e)), span));
        }
        if self.is_op("++") || self.is_op("--") {
            let inc = self.is_op("++");
            self.bump();
            let e = self.unary()?;
            let span = start.to(e.span);
            return Ok(self.mk(
                ExprKind::IncDec {
                    inc,
                    prefix: true,
                    expr: Box::new(e),
                },
                span,
            ));
        }
        let mut e = self.primary()?;
        // A `++`/`--` that starts a line is the prefix of the next statement
        // (`x = y` / `++z`), not a postfix of this one.
        while (self.is_op("++") || self.is_op("--")) && !self.at_line_start() {
            let inc = self.is_op("++");
            let span = e.span.to(self.bump().span);
            e = self.mk(
                ExprKind::IncDec {
                    inc,
                    prefix: false,
                    expr: Box::new(e),
                },
                span,
            );
        }
        Ok(e)
    }

    fn args(&mut self) -> PResult<Vec<Expr>> {
        self.expect_op("(")?;
        let mut args = Vec::new();
        if !self.is_op(")") {
            loop {
                args.push(self.expr()?);
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        self.expect_op(")")?;
        Ok(args)
    }

    fn script_arg(&mut self, index: u32, string: bool, span: Span) -> PResult<ExprKind> {
        let sigil = if string { "@" } else { "$" };
        let Some(args) = self.args else {
            return Ok(ExprKind::ScriptArg { index, string });
        };
        let Some(text) = (index as usize).checked_sub(1).and_then(|i| args.get(i)) else {
            return self.error(
                span,
                format!(
                    "missing script argument '{sigil}{index}' ({} given)",
                    args.len()
                ),
            );
        };
        if string {
            return Ok(ExprKind::Str(text.clone()));
        }
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text.as_str()),
        };
        let (toks, d) = lex(self.file, digits);
        match (toks.as_slice(), d.is_empty()) {
            ([t, _eof], true) if matches!(t.tok, Tok::Num(_)) => {
                let Tok::Num(n) = t.tok else { unreachable!() };
                Ok(ExprKind::Num(if neg { n.wrapping_neg() } else { n }))
            }
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        span,
                        format!("script argument '${index}' is not a number: '{text}'"),
                    )
                    .with_help(format!("use '@{index}' to use it as a string")),
                );
                Err(Fatal)
            }
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let start = self.span();
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                Ok(self.mk(ExprKind::Num(n), start))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(self.mk(ExprKind::Str(s), start))
            }
            Tok::ArgNum(i) | Tok::ArgStr(i) => {
                let string = matches!(self.peek(), Tok::ArgStr(_));
                self.bump();
                let kind = self.script_arg(i, string, start)?;
                Ok(self.mk(kind, start))
            }
            Tok::Op("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.bump();
                let name = Ident { name, span: start };
                if self.is_op("(") {
                    let args = self.args()?;
                    let span = start.to(self.prev_span());
                    Ok(self.mk(ExprKind::Call { name, args }, span))
                } else if self.eat_op("[") {
                    let mut keys = Vec::new();
                    loop {
                        keys.push(self.expr()?);
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    let close = self.expect_op("]")?;
                    Ok(self.mk(ExprKind::Index { array: name, keys }, start.to(close)))
                } else {
                    Ok(self.mk(ExprKind::Var(name), start))
                }
            }
            Tok::Dollar(text) => {
                self.bump();
                self.dollar(&text, start)
            }
            Tok::At(name) => {
                self.bump();
                self.at(&name, start)
            }
            _ => self.expected("an expression"),
        }
    }

    fn dollar(&mut self, text: &str, start: Span) -> PResult<Expr> {
        let bare = text.trim_end_matches('$');
        let dollars = text.len() - bare.len();
        let (base, pretty) = if let Some(set) = bare.strip_prefix('$') {
            let set = match set {
                "vars" => VarSet::Vars,
                "parms" => VarSet::Parms,
                "locals" => VarSet::Locals,
                "return" => VarSet::Return,
                _ => {
                    self.diags.push(
                        Diagnostic::error(start, format!("unknown variable set '$${set}'"))
                            .with_help("use '$$vars', '$$parms', '$$locals' or '$$return'"),
                    );
                    return Err(Fatal);
                }
            };
            // `$$parms` already pretty-prints; `$$parms$` nests one level deeper.
            let pretty = if dollars == 0 {
                Pretty::Shallow
            } else {
                Pretty::Deep
            };
            return Ok(self.mk(
                ExprKind::Target(Box::new(TargetExpr {
                    base: TargetBase::Set(set),
                    path: Vec::new(),
                    pretty,
                })),
                start,
            ));
        } else {
            let name_end = start.start + 1 + bare.len() as u32;
            let ident = Ident {
                name: bare.to_string(),
                span: Span {
                    end: name_end,
                    ..start
                },
            };
            (TargetBase::Var(ident), pretty_of(dollars))
        };
        if pretty != Pretty::None {
            let t = TargetExpr {
                base,
                path: Vec::new(),
                pretty,
            };
            return Ok(self.mk(ExprKind::Target(Box::new(t)), start));
        }
        self.target_path(base, start)
    }

    fn target_path(&mut self, base: TargetBase, start: Span) -> PResult<Expr> {
        let mut path = Vec::new();
        loop {
            if self.eat_op("->") {
                path.push(PathElem::Field(self.ident("a field name after '->'")?));
            } else if self.is_op("[") {
                self.bump();
                let idx = self.expr()?;
                self.expect_op("]")?;
                path.push(PathElem::Index(idx));
            } else {
                break;
            }
        }
        let mut pretty = Pretty::None;
        // `$a->b$`, `@cast(p, "T")$`: the lexer leaves a bare `$`/`$$` right after
        // the field name or the `)`.
        let cast = matches!(base, TargetBase::Cast { .. });
        if let Tok::Op(o @ ("$" | "$$")) = *self.peek()
            && self.span().start == self.prev_span().end
            && (!path.is_empty() || cast)
        {
            pretty = pretty_of(o.len());
            self.bump();
        }
        let span = start.to(self.prev_span());
        Ok(self.mk(
            ExprKind::Target(Box::new(TargetExpr { base, path, pretty })),
            span,
        ))
    }

    fn at(&mut self, name: &str, start: Span) -> PResult<Expr> {
        match name {
            "cast" => {
                self.expect_op("(")?;
                let addr = self.expr()?;
                self.expect_op(",")?;
                let ty = match self.peek().clone() {
                    Tok::Str(s) => {
                        self.bump();
                        s
                    }
                    _ => return self.expected("a type name string"),
                };
                let module = if self.eat_op(",") {
                    match self.peek().clone() {
                        Tok::Str(s) => {
                            self.bump();
                            Some(s)
                        }
                        _ => return self.expected("a module path string"),
                    }
                } else {
                    None
                };
                self.expect_op(")")?;
                self.target_path(TargetBase::Cast { addr, ty, module }, start)
            }
            "defined" | "entry" => {
                self.expect_op("(")?;
                let e = self.expr()?;
                self.expect_op(")")?;
                let span = start.to(self.prev_span());
                let kind = if name == "defined" {
                    ExprKind::Defined(Box::new(e))
                } else {
                    ExprKind::Entry(Box::new(e))
                };
                Ok(self.mk(kind, span))
            }
            _ => {
                let Some(op) = StatOp::from_name(name) else {
                    let known = [
                        "cast",
                        "defined",
                        "entry",
                        "count",
                        "sum",
                        "min",
                        "max",
                        "avg",
                        "variance",
                        "hist_log",
                        "hist_linear",
                    ];
                    let mut d = Diagnostic::error(start, format!("unknown operator '@{name}'"));
                    let near = crate::diag::nearest(name, known);
                    if let Some(n) = near.first() {
                        d = d.with_help(format!("did you mean '@{n}'?"));
                    }
                    self.diags.push(d);
                    return Err(Fatal);
                };
                let mut args = self.args()?;
                let span = start.to(self.prev_span());
                if args.len() != 1 + op.param_count() {
                    return self.error(
                        span,
                        format!(
                            "'@{name}' takes {} argument{}, found {}",
                            1 + op.param_count(),
                            if op.param_count() == 0 { "" } else { "s" },
                            args.len()
                        ),
                    );
                }
                let arg = args.remove(0);
                Ok(self.mk(
                    ExprKind::Stat {
                        op,
                        arg: Box::new(arg),
                        params: args,
                    },
                    span,
                ))
            }
        }
    }
}

fn pretty_of(dollars: usize) -> Pretty {
    match dollars {
        0 => Pretty::None,
        1 => Pretty::Shallow,
        _ => Pretty::Deep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Script {
        let (s, d) = parse(FileId(0), src, &ParseOptions::default());
        assert!(d.is_empty(), "{d:?}");
        s
    }

    fn body_expr(s: &Script) -> &Expr {
        let Item::Probe(p) = &s.items[0] else {
            panic!("not a probe")
        };
        let StmtKind::Expr(e) = &p.body.stmts[0].kind else {
            panic!("not an expression")
        };
        e
    }

    #[test]
    fn modulo_binds_tighter_than_equality_and_assignment_is_loosest() {
        let s = parse_ok("probe begin { x = a % 1000 == 0 }");
        let ExprKind::Assign { op: None, rhs, .. } = &body_expr(&s).kind else {
            panic!()
        };
        let ExprKind::Binary {
            op: BinOp::Eq, lhs, ..
        } = &rhs.kind
        else {
            panic!("{rhs:?}")
        };
        assert!(matches!(lhs.kind, ExprKind::Binary { op: BinOp::Mod, .. }));
    }

    #[test]
    fn concatenation_is_looser_than_addition() {
        let s = parse_ok(r#"probe begin { x = "a" . 1 + 2 }"#);
        let ExprKind::Assign { rhs, .. } = &body_expr(&s).kind else {
            panic!()
        };
        assert!(matches!(
            &rhs.kind,
            ExprKind::Binary { op: BinOp::Concat, rhs, .. }
                if matches!(rhs.kind, ExprKind::Binary { op: BinOp::Add, .. })
        ));
    }

    #[test]
    fn script_arguments_are_substituted() {
        let opts = ParseOptions {
            args: Some(vec!["0x10".into(), "name".into()]),
        };
        let (s, d) = parse(FileId(0), "probe begin { x = $1 . @2 }", &opts);
        assert!(d.is_empty());
        let ExprKind::Assign { rhs, .. } = &body_expr(&s).kind else {
            panic!()
        };
        let ExprKind::Binary { lhs, rhs, .. } = &rhs.kind else {
            panic!()
        };
        assert_eq!(lhs.kind, ExprKind::Num(16));
        assert_eq!(rhs.kind, ExprKind::Str("name".into()));
    }

    #[test]
    fn recovers_and_reports_several_errors() {
        let (s, d) = parse(
            FileId(0),
            "probe begin {\n x = (1\n y = * 2\n z = 3\n}\nprobe end { }",
            &ParseOptions::default(),
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(s.items.len(), 2);
    }
}
