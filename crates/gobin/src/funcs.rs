//! What a caller gets back from a [`crate::GoBinary`]: functions, inline-expanded stack
//! frames, and the glob patterns that select functions by name.

use crate::VirtAddr;

/// A function's `funcFlag` bits, as the runtime records them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FuncFlags(pub u8);

impl FuncFlags {
    /// `funcFlag_TOPFRAME`: the function is the top of a call stack (traceback stops).
    pub const TOPFRAME: u8 = 1;
    /// `funcFlag_SPWRITE`: the function writes SP other than by constant adjustment.
    pub const SPWRITE: u8 = 2;
    /// `funcFlag_ASM`: written in assembly.
    pub const ASM: u8 = 4;

    pub fn top_frame(self) -> bool {
        self.0 & Self::TOPFRAME != 0
    }
    pub fn sp_write(self) -> bool {
        self.0 & Self::SPWRITE != 0
    }
    pub fn asm(self) -> bool {
        self.0 & Self::ASM != 0
    }
}

/// One function of `.gopclntab`. Cheap to copy; its name borrows the executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Func<'data> {
    /// The first instruction.
    pub entry: VirtAddr,
    /// One past the last byte: the next function's entry (so alignment padding
    /// belongs to the function before it, as the runtime sees it).
    pub end: VirtAddr,
    /// The symbol name, such as `main.(*T).Method` or `runtime.newstack`.
    pub name: &'data str,
    pub flags: FuncFlags,
    /// The runtime's `funcID`. Its numbering changed between Go releases (1.21 sorted
    /// the list), so compare it only with a table for the binary's Go version.
    pub func_id: u8,
    /// Size in bytes of the arguments and results on the stack (ABI0 frame layout).
    pub args: i32,
    /// The line of the `func` keyword (Go 1.20 and later).
    pub start_line: Option<u32>,
    /// Index in the function table.
    pub index: usize,
}

impl Func<'_> {
    /// True if `pc` is inside the function.
    pub fn contains(&self, pc: VirtAddr) -> bool {
        self.entry <= pc && pc < self.end
    }
}

/// One call the compiler inlined, from the inline tree of the function whose code
/// holds it (`.gopclntab`'s `FUNCDATA_InlTree` and `PCDATA_InlTreeIndex`, which survive
/// stripping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlinedCall<'data> {
    /// The inlined function, as its out-of-line copy is named.
    pub callee: &'data str,
    /// The function in the function table whose code holds the call.
    pub holder: Func<'data>,
    /// The call's entry in the holder's inline tree.
    pub index: u32,
    /// Where the call's code starts: the lowest pc whose inlined frames include this
    /// call (its own code, or that of a call inlined into it).
    pub addr: VirtAddr,
    /// An instruction at the call site, in the caller (the inline mark).
    pub call_pc: VirtAddr,
    /// The inlined function it was inlined into, if not the holder itself.
    pub parent: Option<u32>,
}

/// One frame at a pc, inlined ones included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frame<'data> {
    /// The function the source position belongs to.
    pub function: &'data str,
    pub file: &'data str,
    pub line: u32,
    /// True if the compiler inlined this function into its caller (the next frame).
    pub inlined: bool,
}

/// Matches Go function names against a shell-style glob: `*` any run of characters,
/// `?` one character, `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]` one of a set, `\x` the
/// character `x`. Every other character, including `.`, `/` and `(`, is literal, and
/// so is a `*` that directly follows `(`, so that `main.(*T).M` names the method on
/// the pointer type and `main.(*T).*` all of its methods, and so is `[...]`, which is
/// how the pclntab spells the type arguments of generic instantiations
/// (`slices.Sort[...]`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pat = tokens(pattern);
    let text: Vec<char> = name.chars().collect();
    matches(&pat, &text)
}

/// True if `pattern` has a character that makes it a glob rather than a name.
pub fn is_glob(pattern: &str) -> bool {
    tokens(pattern).iter().any(|t| !matches!(t, Tok::Lit(_)))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                out.push(Tok::Lit(chars[i + 1]));
                i += 2;
                continue;
            }
            '*' if i > 0 && chars[i - 1] == '(' => out.push(Tok::Lit('*')),
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '[' if chars[i..].starts_with(&['[', '.', '.', '.', ']']) => {
                out.extend("[...]".chars().map(Tok::Lit));
                i += 5;
                continue;
            }
            '[' => {
                if let Some((tok, next)) = class(&chars, i) {
                    out.push(tok);
                    i = next;
                    continue;
                }
                out.push(Tok::Lit('['));
            }
            _ => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    out
}

/// Parses a `[...]` class starting at `chars[at] == '['`; `None` if it never closes
/// (then the `[` is literal, as Go's `[...]` in generic instantiation names usually is).
fn class(chars: &[char], at: usize) -> Option<(Tok, usize)> {
    let mut i = at + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        if c == ']' && !first {
            return Some((Tok::Class { negated, items }, i + 1));
        }
        first = false;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            items.push((c, chars[i + 2]));
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
    None
}

/// Iterative wildcard matching with one backtrack point for the last `*`, linear in
/// practice.
fn matches(pat: &[Tok], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let ok = match pat.get(p) {
            Some(Tok::Lit(c)) => *c == text[t],
            Some(Tok::Any) => true,
            Some(Tok::Class { negated, items }) => {
                items.iter().any(|&(lo, hi)| lo <= text[t] && text[t] <= hi) != *negated
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            None => false,
        };
        if ok {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_select_go_names() {
        assert!(glob_match("main.*", "main.main"));
        assert!(glob_match("main.*", "main.(*T).Method"));
        assert!(!glob_match("main.*", "runtime.main"));
        assert!(glob_match("runtime.new*", "runtime.newstack"));
        assert!(glob_match("runtime.new*", "runtime.newproc1"));
        assert!(!glob_match("runtime.new*", "runtime.mnew"));
        assert!(glob_match("main.(*T).Method", "main.(*T).Method"));
        assert!(!glob_match("main.(*T).Method", "main.(xT).Method"));
        assert!(glob_match("main.(*T).*", "main.(*T).Method"));
        assert!(!glob_match("main.(*T).*", "main.T.Method"));
        assert!(glob_match("main.?eaf", "main.leaf"));
        assert!(glob_match("main.[a-m]eaf", "main.leaf"));
        assert!(!glob_match("main.[!l]eaf", "main.leaf"));
        assert!(glob_match("*.leaf", "main.leaf"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        // An unclosed bracket is literal, as in generic names.
        assert!(glob_match("main.F[", "main.F["));
        assert!(glob_match("*", ""));
        // Generic instantiations keep their literal `[...]`.
        assert!(glob_match("slices.Sort[...]", "slices.Sort[...]"));
        assert!(!glob_match("slices.Sort[...]", "slices.Sort."));
        assert!(glob_match(
            "sync/atomic.(*Pointer[...]).*",
            "sync/atomic.(*Pointer[...]).Load"
        ));
        assert!(!glob_match("main.leaf", "main.leaf2"));
    }

    #[test]
    fn literal_names_are_not_globs() {
        assert!(!is_glob("main.(*T).Method"));
        assert!(is_glob("main.(*T).*"));
        assert!(is_glob("runtime.new*"));
        assert!(!is_glob("slices.Sort[...]"));
    }
}
