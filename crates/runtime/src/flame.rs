//! Flame graphs of the stacks a script counted: the collapsed-stack text that
//! flame-graph tools read (`root;…;leaf count` a line, as Brendan Gregg's
//! `stackcollapse` scripts write it) and an SVG drawn by the `inferno` crate.
//!
//! The CLI fills a [`Folded`] at the end of a run from every array or statistic
//! keyed by `ubacktrace()`, symbolising each stack with
//! [`crate::symbolize::Symbolizer::folded`]; equal stacks are merged.

use std::collections::BTreeMap;
use std::io::Write;

/// Stacks and how often each was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    stacks: BTreeMap<String, u64>,
}

impl Folded {
    /// Counts `weight` more for `stack` (`root;…;leaf`); empty stacks and weights of
    /// zero draw nothing and are left out.
    pub fn add(&mut self, stack: String, weight: u64) {
        if stack.is_empty() || weight == 0 {
            return;
        }
        *self.stacks.entry(stack).or_insert(0) += weight;
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The collapsed lines, sorted.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.stacks.iter().map(|(s, n)| format!("{s} {n}"))
    }

    /// Writes the collapsed-stack text.
    pub fn write_folded(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for l in self.lines() {
            writeln!(out, "{l}")?;
        }
        Ok(())
    }

    /// Writes a flame graph titled `title`, widths in `count_name` (what the
    /// weights count, such as "hits").
    pub fn write_svg(
        &self,
        title: &str,
        count_name: &str,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let lines: Vec<String> = self.lines().collect();
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = count_name.to_string();
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_stacks_merge_and_the_svg_names_every_frame() {
        let mut f = Folded::default();
        f.add("main.main;main.a;main.leaf".into(), 2);
        f.add("main.main;main.b".into(), 1);
        f.add("main.main;main.a;main.leaf".into(), 3);
        f.add(String::new(), 7);
        let mut text = Vec::new();
        f.write_folded(&mut text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "main.main;main.a;main.leaf 5\nmain.main;main.b 1\n"
        );
        let mut svg = Vec::new();
        f.write_svg("t", "hits", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        for name in ["main.main", "main.a", "main.leaf", "main.b"] {
            assert!(svg.contains(&format!("<title>{name} (")), "{name} missing");
        }
    }
}
