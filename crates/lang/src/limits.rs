//! How long a string value and a printed line may be, as stap's `MAXSTRINGLEN` and
//! its print buffer: a rule of the language both back ends follow, so it lives here
//! and travels in [`crate::TypeInfo::limits`]. A user sets them as stap's users do,
//! with `-D MAXSTRINGLEN=N` and `-D MAXPRINTFLEN=N`.
//!
//! A string holds at most `max_string - 1` bytes (127 by default): a longer one is cut
//! there, in the kernel and in user space alike. Since neither side can tell a string
//! cut at the limit from one that is exactly that long, a string that reaches it is
//! printed with [`CUT_MARK`] after it and counted, and the count is reported at exit.
//! One `printf` prints at most `max_printf` bytes; a longer line is cut, marked, and
//! keeps its newline, and is counted too.
//!
//! A pretty-printed Go value (`$x$`, `$x$$`, `$$vars`) is bounded three ways, so that
//! neither the compile nor the probe grows with the type (a recursive or huge type
//! costs no more than these): composite values nested deeper than `pretty_depth`,
//! elements of a slice, array or map past `pretty_items`, and target bytes past
//! `pretty_bytes` for the whole value (a struct's fields are read with it, so the
//! budget bounds them too) are left out, and printed as [`CUT_MARK`]
//! (`-D MAXPRETTYDEPTH=N`, `-D MAXPRETTYITEMS=N`, `-D MAXPRETTYBYTES=N`).

/// Appended to a printed string that reached the string limit, and to a cut line.
pub const CUT_MARK: &str = "…";

/// The limits of one compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a string slot, its NUL included: a power of two (the kernel side
    /// bounds string indexes with a mask).
    pub max_string: u32,
    /// Bytes one `printf` (or `print`) prints at most.
    pub max_printf: u32,
    /// Composite values (structs, arrays, slices, maps, interfaces, followed
    /// pointers) nested at most this deep in a pretty-printed value.
    pub pretty_depth: u32,
    /// Elements of one slice, array or map printed at most.
    pub pretty_items: u32,
    /// Bytes of the traced program one pretty-printed value copies at most.
    pub pretty_bytes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_string: 128,
            max_printf: 8192,
            pretty_depth: 6,
            pretty_items: 16,
            pretty_bytes: 8192,
        }
    }
}

/// The largest string slot: strings live in a 30 KiB scratch area, a few at a time.
pub const MAX_STRING_SLOT: u32 = 2048;

/// The most target bytes one pretty-printed value may copy: its record is built in
/// the same scratch area.
pub const MAX_PRETTY_BYTES: u32 = 16384;

/// `n` if it is in `lo..=hi`, else the error that says so.
fn within(def: &str, name: &str, n: u32, lo: u32, hi: u32) -> Result<u32, String> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "-D {def}: {} is between {lo} and {hi}",
            name.trim()
        ))
    }
}

impl Limits {
    /// Applies one `-D NAME=VALUE`. `MAXSTRINGLEN` is rounded up to a power of two
    /// between 16 and [`MAX_STRING_SLOT`].
    pub fn define(&mut self, def: &str) -> Result<(), String> {
        let (name, value) = def
            .split_once('=')
            .ok_or_else(|| format!("-D {def}: expected NAME=VALUE"))?;
        let n: u32 = value
            .trim()
            .parse()
            .map_err(|_| format!("-D {def}: {value:?} is not a number"))?;
        match name.trim() {
            "MAXSTRINGLEN" => {
                if !(16..=MAX_STRING_SLOT).contains(&n) {
                    return Err(format!(
                        "-D {def}: MAXSTRINGLEN is between 16 and {MAX_STRING_SLOT}"
                    ));
                }
                self.max_string = n.next_power_of_two();
            }
            "MAXPRINTFLEN" => {
                if !(64..=1 << 20).contains(&n) {
                    return Err(format!("-D {def}: MAXPRINTFLEN is between 64 and 1048576"));
                }
                self.max_printf = n;
            }
            "MAXPRETTYDEPTH" => self.pretty_depth = within(def, name, n, 1, 64)?,
            "MAXPRETTYITEMS" => self.pretty_items = within(def, name, n, 1, 1024)?,
            "MAXPRETTYBYTES" => {
                self.pretty_bytes = within(def, name, n, 64, MAX_PRETTY_BYTES)?;
            }
            other => {
                return Err(format!(
                    "-D {def}: gotap knows MAXSTRINGLEN, MAXPRINTFLEN, MAXPRETTYDEPTH, MAXPRETTYITEMS and MAXPRETTYBYTES, not {other}"
                ));
            }
        }
        Ok(())
    }

    /// The most bytes a string holds.
    pub fn string_bytes(&self) -> usize {
        self.max_string as usize - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defines_set_the_limits() {
        let mut l = Limits::default();
        l.define("MAXSTRINGLEN=200").expect("valid");
        assert_eq!((l.max_string, l.string_bytes()), (256, 255));
        l.define("MAXPRINTFLEN=100").expect("valid");
        assert_eq!(l.max_printf, 100);
        assert!(l.define("MAXSTRINGLEN=1000000").is_err());
        assert!(l.define("MAXACTION=5").is_err());
        l.define("MAXPRETTYDEPTH=3").expect("valid");
        l.define("MAXPRETTYITEMS=4").expect("valid");
        l.define("MAXPRETTYBYTES=512").expect("valid");
        assert_eq!(
            (l.pretty_depth, l.pretty_items, l.pretty_bytes),
            (3, 4, 512)
        );
        assert!(l.define("MAXPRETTYBYTES=100000").is_err());
        assert!(l.define("MAXPRETTYDEPTH=0").is_err());
        assert!(l.define("MAXSTRINGLEN").is_err());
    }
}
