//! The dialect of `=~` and `!~`: a pattern is a string literal, compiled once by the
//! checker (so a bad one is an error at its place) and again, the same way, by the
//! back end that runs it. Stap's patterns are POSIX extended regular expressions;
//! the `regex` crate's syntax agrees with them for what scripts write (anchors,
//! classes, alternation, repetition, groups), matched on a string's bytes with
//! Unicode classes off, as a C string is.

/// Compiles a pattern, or says why it is not one.
pub fn compile(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regular expression: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_bytes() {
        let re = compile("^ab+c$").expect("compiles");
        assert!(re.is_match(b"abbbc"));
        assert!(!re.is_match(b"ac"));
        assert!(compile("[0-9]{2,}").expect("compiles").is_match(b"x42"));
        assert!(compile("a(b").is_err());
    }
}
