//! End-of-run tables: the globals stap prints when a script wrote them but
//! never read them, the `foreach` sort orders (by value or by the Nth key,
//! ascending or descending, `limit N`), and a funccount-style
//! `FUNC COUNT` table.
//!
//! The global display follows stap's synthetic end probes
//! (`add_global_var_display` in stap's `elaborate.cxx`, checked by
//! `testsuite/systemtap.base/global_end.exp`): `x=5`, a pointer
//! `p=0x7ffd1234`, a string `s="text"` (not escaped), a statistic
//! `s @count=3 @min=1 @max=5 @sum=9 @avg=3` or `s @count=0x0` when empty,
//! and arrays one line per element, `a["one",1]=7`, iterated by value
//! descending (statistics by `@count`).
//!
//! Sorting is stable, as stap's merge sort is: elements that compare equal
//! keep the order they came in, which for stap is insertion order and
//! here is the order the caller supplies. Strings compare bytewise
//! (`strcmp`), numbers as signed 64-bit.

use std::cmp::Ordering;

use crate::stats::Stat;

/// An array index or a scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Long(i64),
    Str(Vec<u8>),
}

/// The value of a global or of an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Long(i64),
    /// A long that holds a pointer (from a target variable's type); stap
    /// displays it in hex.
    Pointer(i64),
    Str(Vec<u8>),
    Stats(Stat),
}

/// One array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub keys: Vec<Key>,
    pub value: Value,
}

/// A statistics extractor, for sorting arrays of statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// What `foreach` sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// `foreach (k in a+)`: the value; for statistics `@count`, as stap.
    Value,
    /// `foreach (k in a @sum-)`: an extractor of statistics values.
    Aggregate(Aggregate),
    /// `foreach ([x, y+] in a)`: the Nth key, counting from 1.
    Key(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `+`
    Ascending,
    /// `-`
    Descending,
}

/// A value to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey<'a> {
    Long(i64),
    Str(&'a [u8]),
}

impl Ord for SortKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Long(a), SortKey::Long(b)) => a.cmp(b),
            (SortKey::Str(a), SortKey::Str(b)) => a.cmp(b),
            // A typed script never mixes kinds in one column.
            (SortKey::Long(_), SortKey::Str(_)) => Ordering::Less,
            (SortKey::Str(_), SortKey::Long(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for SortKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Sorts `items` stably on `key` in `dir`, then keeps the first `limit`.
/// This is what `foreach (... in a+ limit N)` iterates over.
pub fn sort_limit<T>(
    items: &mut Vec<T>,
    dir: Direction,
    limit: Option<usize>,
    key: impl Fn(&T) -> SortKey<'_>,
) {
    match dir {
        Direction::Ascending => items.sort_by(|a, b| key(a).cmp(&key(b))),
        Direction::Descending => items.sort_by(|a, b| key(b).cmp(&key(a))),
    }
    if let Some(n) = limit {
        items.truncate(n);
    }
}

/// The sort key of an aggregate, as stap's `_stp_cmp` takes it.
pub fn aggregate_key(stat: &Stat, agg: Aggregate) -> i64 {
    match agg {
        Aggregate::Count => stat.count,
        Aggregate::Sum => stat.sum,
        Aggregate::Min => stat.min,
        Aggregate::Max => stat.max,
        Aggregate::Avg => stat.avg().unwrap_or(0),
    }
}

fn key_of(k: &Key) -> SortKey<'_> {
    match k {
        Key::Long(v) => SortKey::Long(*v),
        Key::Str(s) => SortKey::Str(s),
    }
}

fn value_key(v: &Value, agg: Aggregate) -> SortKey<'_> {
    match v {
        Value::Long(v) | Value::Pointer(v) => SortKey::Long(*v),
        Value::Str(s) => SortKey::Str(s),
        Value::Stats(s) => SortKey::Long(aggregate_key(s, agg)),
    }
}

/// Sorts array elements for `foreach`. A key column past the last key
/// sorts nothing (the type checker rejects it).
pub fn sort_entries(entries: &mut Vec<Entry>, by: SortBy, dir: Direction, limit: Option<usize>) {
    match by {
        SortBy::Value => sort_limit(entries, dir, limit, |e| {
            value_key(&e.value, Aggregate::Count)
        }),
        SortBy::Aggregate(agg) => sort_limit(entries, dir, limit, |e| value_key(&e.value, agg)),
        SortBy::Key(n) => sort_limit(entries, dir, limit, |e| {
            n.checked_sub(1)
                .and_then(|i| e.keys.get(i))
                .map_or(SortKey::Long(0), key_of)
        }),
    }
}

fn decimal(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(v.to_string().as_bytes());
}

fn write_key(out: &mut Vec<u8>, k: &Key) {
    match k {
        Key::Long(v) => decimal(out, *v),
        Key::Str(s) => {
            out.push(b'"');
            out.extend_from_slice(s);
            out.push(b'"');
        }
    }
}

/// `=5`, `=0x1f`, `="text"` or ` @count=...` after a name.
fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Long(v) => {
            out.push(b'=');
            decimal(out, *v);
        }
        Value::Pointer(v) => {
            out.extend_from_slice(b"=0x");
            out.extend_from_slice(format!("{:x}", *v as u64).as_bytes());
        }
        Value::Str(s) => {
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(s);
            out.push(b'"');
        }
        Value::Stats(s) if s.is_empty() => out.extend_from_slice(b" @count=0x0"),
        Value::Stats(s) => {
            for (label, v) in [
                (" @count=", s.count),
                (" @min=", s.min),
                (" @max=", s.max),
                (" @sum=", s.sum),
                (" @avg=", aggregate_key(s, Aggregate::Avg)),
            ] {
                out.extend_from_slice(label.as_bytes());
                decimal(out, v);
            }
        }
    }
}

/// Prints a scalar global the way stap does at exit: `name=value`.
pub fn write_global(out: &mut Vec<u8>, name: &str, value: &Value) {
    out.extend_from_slice(name.as_bytes());
    write_value(out, value);
    out.push(b'\n');
}

/// Prints an array global the way stap does at exit: one
/// `name[k1,k2]=value` line per element, by value descending
/// (statistics by `@count`), ties in the given order.
pub fn write_global_array(out: &mut Vec<u8>, name: &str, entries: &mut Vec<Entry>) {
    sort_entries(entries, SortBy::Value, Direction::Descending, None);
    for e in entries.iter() {
        out.extend_from_slice(name.as_bytes());
        out.push(b'[');
        for (i, k) in e.keys.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(out, k);
        }
        out.push(b']');
        write_value(out, &e.value);
        out.push(b'\n');
    }
}

/// Width of the FUNC column of BCC's funccount (`"%-36s %8s"`).
const FUNC_WIDTH: usize = 36;
/// Width of each number column.
const COUNT_WIDTH: usize = 8;
/// Columns a row may take, so that it fits a terminal.
const ROW_WIDTH: usize = 80;

/// A function-count table like BCC's funccount: a `FUNC  COUNT` header,
/// then one row per function with a non-zero count, by count descending
/// then name. The FUNC column is 36 wide as in funccount, wider if a name
/// needs it so the counts stay aligned, but never so wide that a row would
/// not fit 80 columns: a longer name (a generic Go function's, with its type
/// arguments, runs to hundreds) is printed whole and pushes its own count
/// out, as funccount's `%-36s %8d` does, and no other row.
pub fn write_func_counts(out: &mut Vec<u8>, counts: &[(&str, u64)]) {
    let rows: Vec<(&str, Vec<u64>)> = counts.iter().map(|(f, n)| (*f, vec![*n])).collect();
    write_table(out, &["COUNT"], rows);
}

/// [`write_func_counts`] with an INLINED column: of each function's calls, how many
/// were calls the compiler inlined (`(name, count, inlined)`).
pub fn write_func_counts_inlined(out: &mut Vec<u8>, counts: &[(&str, u64, u64)]) {
    let rows: Vec<(&str, Vec<u64>)> = counts.iter().map(|(f, n, i)| (*f, vec![*n, *i])).collect();
    write_table(out, &["COUNT", "INLINED"], rows);
}

/// The rows with a non-zero first number, by it descending then by name, under a
/// `FUNC` header and `numbers`' headers, as the functions above describe.
fn write_table(out: &mut Vec<u8>, numbers: &[&str], mut rows: Vec<(&str, Vec<u64>)>) {
    let first = |r: &(&str, Vec<u64>)| r.1.first().copied().unwrap_or(0);
    rows.retain(|r| first(r) > 0);
    rows.sort_by(|a, b| first(b).cmp(&first(a)).then_with(|| a.0.cmp(b.0)));
    let columns = |name: &str| name.chars().count();
    let widest = ROW_WIDTH - numbers.len() * (1 + COUNT_WIDTH);
    let width = rows
        .iter()
        .map(|(name, _)| columns(name))
        .filter(|w| *w <= widest)
        .max()
        .unwrap_or(0)
        .max(FUNC_WIDTH);
    let mut row = |name: &str, cells: &[String]| {
        out.extend_from_slice(name.as_bytes());
        out.resize(out.len() + width.saturating_sub(columns(name)), b' ');
        for cell in cells {
            out.resize(out.len() + 1 + COUNT_WIDTH.saturating_sub(cell.len()), b' ');
            out.extend_from_slice(cell.as_bytes());
        }
        out.push(b'\n');
    };
    let header: Vec<String> = numbers.iter().map(|h| h.to_string()).collect();
    row("FUNC", &header);
    for (name, counts) in rows {
        let cells: Vec<String> = counts.iter().map(u64::to_string).collect();
        row(name, &cells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Hist;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).expect("utf-8")
    }

    fn stats(values: &[i64]) -> Stat {
        let mut s = Stat::new(&Hist::None);
        for &v in values {
            s.add(&Hist::None, v);
        }
        s
    }

    fn str_key(s: &str) -> Key {
        Key::Str(s.as_bytes().to_vec())
    }

    // testsuite/systemtap.base/global_end.{stp,exp}: gamma, phi, iota and
    // alpha are written in `probe begin` and never read.
    #[test]
    fn unread_globals_like_stap_global_end() {
        let mut out = Vec::new();
        write_global(
            &mut out,
            "gamma",
            &Value::Str(b"abcdefghijklmnopqrstuvwxyz".to_vec()),
        );
        write_global(&mut out, "phi", &Value::Stats(stats(&[1, 2, 3, 4])));
        let mut iota = vec![
            Entry {
                keys: vec![str_key("one")],
                value: Value::Str(b"eleven".to_vec()),
            },
            Entry {
                keys: vec![str_key("two")],
                value: Value::Str(b"twelve".to_vec()),
            },
        ];
        write_global_array(&mut out, "iota", &mut iota);
        let mut alpha: Vec<Entry> = [("one", 1, 1), ("one", 2, 2), ("two", 1, 3), ("two", 2, 4)]
            .into_iter()
            .map(|(a, b, v)| Entry {
                keys: vec![str_key(a), Key::Long(b)],
                value: Value::Long(v),
            })
            .collect();
        write_global_array(&mut out, "alpha", &mut alpha);
        assert_eq!(
            text(out),
            r#"gamma="abcdefghijklmnopqrstuvwxyz"
phi @count=4 @min=1 @max=4 @sum=10 @avg=2
iota["two"]="twelve"
iota["one"]="eleven"
alpha["two",2]=4
alpha["two",1]=3
alpha["one",2]=2
alpha["one",1]=1
"#
        );
    }

    // testsuite/systemtap.base/global_stat.exp: an aggregate never added to.
    #[test]
    fn empty_statistic_global() {
        let mut out = Vec::new();
        write_global(&mut out, "var", &Value::Stats(Stat::new(&Hist::None)));
        assert_eq!(text(out), "var @count=0x0\n");
    }

    // testsuite/systemtap.printf/autoprint.exp: a pointer shows as 0x...,
    // a plain long in decimal.
    #[test]
    fn pointers_print_in_hex() {
        let mut out = Vec::new();
        write_global(&mut out, "a", &Value::Pointer(0x7ffd1234));
        write_global(&mut out, "b", &Value::Long(-3));
        assert_eq!(text(out), "a=0x7ffd1234\nb=-3\n");
    }

    #[test]
    fn statistics_arrays_sort_by_count() {
        let mut out = Vec::new();
        let mut e = vec![
            Entry {
                keys: vec![Key::Long(1)],
                value: Value::Stats(stats(&[2, 3])),
            },
            Entry {
                keys: vec![Key::Long(2)],
                value: Value::Stats(stats(&[4, 5, 6])),
            },
        ];
        write_global_array(&mut out, "b", &mut e);
        assert_eq!(
            text(out),
            "b[2] @count=3 @min=4 @max=6 @sum=15 @avg=5\nb[1] @count=2 @min=2 @max=3 @sum=5 @avg=2\n"
        );
    }

    /// testsuite/systemtap.maps/foreach_limit.{stp,exp}: the array as
    /// inserted, key => value.
    fn foreach_limit_array() -> Vec<Entry> {
        [
            (9, 18),
            (1, 40),
            (8, 16),
            (2, 4),
            (7, 14),
            (3, 36),
            (6, 12),
            (5, 10),
            (4, 8),
            (10, 20),
        ]
        .into_iter()
        .map(|(k, v)| Entry {
            keys: vec![Key::Long(k)],
            value: Value::Long(v),
        })
        .collect()
    }

    fn keys(e: &[Entry]) -> Vec<i64> {
        e.iter()
            .map(|e| match e.keys[0] {
                Key::Long(k) => k,
                Key::Str(_) => -1,
            })
            .collect()
    }

    #[test]
    fn foreach_sort_and_limit_like_stap() {
        let mut by_value = foreach_limit_array();
        sort_entries(&mut by_value, SortBy::Value, Direction::Ascending, Some(5));
        assert_eq!(keys(&by_value), [2, 4, 5, 6, 7]);
        let mut by_key = foreach_limit_array();
        sort_entries(&mut by_key, SortBy::Key(1), Direction::Ascending, Some(5));
        assert_eq!(keys(&by_key), [1, 2, 3, 4, 5]);
        let mut desc = foreach_limit_array();
        sort_entries(&mut desc, SortBy::Value, Direction::Descending, Some(3));
        assert_eq!(keys(&desc), [1, 3, 10]);
        // `limit` without sorting keeps the first N in iteration order.
        let mut unsorted = foreach_limit_array();
        unsorted.truncate(5);
        assert_eq!(keys(&unsorted), [9, 1, 8, 2, 7]);
    }

    #[test]
    fn sorting_is_stable_and_strings_compare_bytewise() {
        let mut e: Vec<Entry> = [("b", 1), ("a", 2), ("c", 1), ("B", 2)]
            .into_iter()
            .map(|(k, v)| Entry {
                keys: vec![str_key(k), Key::Long(-v)],
                value: Value::Long(v),
            })
            .collect();
        let names = |e: &[Entry]| -> Vec<Key> { e.iter().map(|e| e.keys[0].clone()).collect() };
        sort_entries(&mut e, SortBy::Value, Direction::Descending, None);
        assert_eq!(
            names(&e),
            [str_key("a"), str_key("B"), str_key("b"), str_key("c")]
        );
        sort_entries(&mut e, SortBy::Key(1), Direction::Ascending, None);
        assert_eq!(
            names(&e),
            [str_key("B"), str_key("a"), str_key("b"), str_key("c")]
        );
        sort_entries(&mut e, SortBy::Key(2), Direction::Ascending, None);
        assert_eq!(
            names(&e),
            [str_key("B"), str_key("a"), str_key("b"), str_key("c")]
        );
    }

    #[test]
    fn statistics_sort_by_any_extractor() {
        let mut e: Vec<Entry> = [vec![1, 100], vec![50, 50, 50], vec![7]]
            .into_iter()
            .enumerate()
            .map(|(i, v)| Entry {
                keys: vec![Key::Long(i as i64)],
                value: Value::Stats(stats(&v)),
            })
            .collect();
        sort_entries(
            &mut e,
            SortBy::Aggregate(Aggregate::Max),
            Direction::Descending,
            None,
        );
        assert_eq!(keys(&e), [0, 1, 2]);
        sort_entries(
            &mut e,
            SortBy::Aggregate(Aggregate::Sum),
            Direction::Descending,
            None,
        );
        assert_eq!(keys(&e), [1, 0, 2]);
        sort_entries(
            &mut e,
            SortBy::Aggregate(Aggregate::Avg),
            Direction::Ascending,
            None,
        );
        assert_eq!(keys(&e), [2, 1, 0]);
        sort_entries(&mut e, SortBy::Value, Direction::Descending, Some(1));
        assert_eq!(keys(&e), [1]);
    }

    // BCC tools/funccount.py prints `"%-36s %8s" % ("FUNC", "COUNT")` and
    // `"%-36s %8d"` per function.
    #[test]
    fn func_counts_table() {
        let mut out = Vec::new();
        write_func_counts(
            &mut out,
            &[
                ("main.work", 10),
                ("main.idle", 0),
                ("fmt.Println", 250),
                ("main.add", 10),
            ],
        );
        assert_eq!(
            text(out),
            "FUNC                                    COUNT
fmt.Println                               250
main.add                                   10
main.work                                  10
"
        );
    }

    #[test]
    fn func_counts_widen_for_long_names() {
        let long = "github.com/example/service/internal/handler.(*Server).ServeHTTP";
        let mut out = Vec::new();
        write_func_counts(&mut out, &[(long, 3), ("main.main", 1)]);
        let text = text(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|l| l.len() == long.len() + 1 + 8),
            "{text}"
        );
        assert!(lines[0].starts_with("FUNC ") && lines[0].ends_with("   COUNT"));
        assert!(lines[1].starts_with(long) && lines[1].ends_with("       3"));
    }

    #[test]
    fn a_name_too_long_for_the_terminal_overflows_its_own_row_only() {
        let generic = "main.Fold[go.shape.struct { Name string; Size int; Tags []string; \
                       Owner *main.Account },go.shape.int]";
        let mid = "k8s.io/client-go/tools/cache.(*sharedIndexInformer).HandleDeltas";
        let mut out = Vec::new();
        write_func_counts(&mut out, &[(generic, 7), (mid, 12), ("main.main", 1)]);
        let text = text(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // The generic name's row is the name, whole, then its count as funccount
        // prints it; every other row is as wide as the longest name that fits.
        assert_eq!(lines[2], format!("{generic}        7"));
        for l in [lines[0], lines[1], lines[3]] {
            assert_eq!(l.len(), mid.len() + 1 + 8, "{text}");
            assert!(l.len() <= 80);
        }
        assert!(lines[1].starts_with(mid) && lines[1].ends_with("      12"));
    }

    #[test]
    fn the_inlined_column_keeps_rows_within_80_columns_too() {
        let generic = "main.Fold[go.shape.string,go.shape.struct { Name string; Size int; \
                       Tags []string; Location struct { Shelf int; Row int } }]";
        let mut out = Vec::new();
        write_func_counts_inlined(
            &mut out,
            &[
                (generic, 300, 0),
                ("main.leaf", 3000, 1000),
                ("main.idle", 0, 0),
            ],
        );
        let text = text(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "FUNC                                    COUNT  INLINED",
                "main.leaf                                3000     1000",
                &format!("{generic}      300        0"),
            ]
        );
    }
}
