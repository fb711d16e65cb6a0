//! Decoding the records compiled probes send through the ring buffer. A
//! [`Decoder`] is built once per script from its [`ScriptSpec`]: every `printf`
//! format is parsed and checked against its fields then, so handling a record is
//! reading fields at fixed offsets and formatting, with no allocation per event
//! (string arguments borrow the record's bytes up to their NUL; backtrace frames go
//! to a reused buffer).
//!
//! A record is the event id (`u32` little endian, an index into
//! [`ScriptSpec::events`]), 4 bytes of padding, then the fields at their offsets
//! counted from the end of that header. A record too short for its event, or with
//! an unknown id, is an error, never a panic: the bytes come from the kernel.
//!
//! A Go value sent whole (`$x$`, [`FieldKind::Value`]) is printed as Go's `%+v`
//! prints it ([`crate::govalue`]) into a buffer kept from record to record, and
//! handed to the format as the string its `%s` prints.

use bpf::govalue::Shape;
use bpf::script::{EVENT_HEADER, EventSpec, Field, FieldKind, ScriptSpec};
use thiserror::Error;

use lang::format::{ArgKind, Format, FormatError, MAX_FIELD};

use crate::format::{Arg, ArgError, Cuts, MAX_PRINTF_LEN, string_arg, write_line};
use crate::globals::cstr;

/// What the CLI does after a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    Continue,
    /// The script called `exit()`: run the `end` probes and stop.
    Exit,
    /// The probe hit an error it cannot go on from; the message as stap words it
    /// (the CLI prints `ERROR: ` and the message, then ends the run).
    Error(&'a str),
    /// Print these frames, symbolised (with file:line if asked): the probe's pc
    /// (or, with `first_is_return`, a return address), then return addresses, some
    /// maybe marked `bpf::script::TENTATIVE` (see `symbolize::Symbolizer::logical`).
    Backtrace {
        frames: &'a [u64],
        fileline: bool,
        first_is_return: bool,
        /// The load bias of the binary in the process the stack is from.
        bias: u64,
    },
}

#[derive(Debug, Error)]
pub enum EventError {
    #[error("event {event}: bad printf format: {source}")]
    Format { event: usize, source: FormatError },
    #[error("event {event}: the format takes {expected} arguments but the record has {got} fields")]
    FieldCount {
        event: usize,
        expected: usize,
        got: usize,
    },
    #[error("event {event}: argument {index} of the format is a {expected:?}, the field is not")]
    FieldKind {
        event: usize,
        index: usize,
        expected: ArgKind,
    },
    #[error("record of {len} bytes is shorter than its header")]
    NoHeader { len: usize },
    #[error("record names event {id}, the script has {count}")]
    UnknownEvent { id: u32, count: usize },
    #[error("event {event}: record of {len} bytes, its fields need {need}")]
    Short {
        event: usize,
        len: usize,
        need: usize,
    },
    #[error("event {event}: {source}")]
    Args { event: usize, source: ArgError },
    #[error("event {event}: field {index} names value shape {shape}, the script has {count}")]
    UnknownShape {
        event: usize,
        index: usize,
        shape: u32,
        count: usize,
    },
}

/// More arguments than this in one `printf` are gathered on the heap.
const STACK_ARGS: usize = 32;

enum Decoded {
    Printf {
        format: Format,
        fields: Vec<Field>,
    },
    Exit,
    Backtrace {
        count: usize,
        frames: usize,
        max: usize,
        fileline: bool,
    },
    Error(String),
}

/// Turns ring buffer records into output and actions.
pub struct Decoder {
    events: Vec<Decoded>,
    frames: Vec<u64>,
    /// The most bytes one printf prints (`lang::Limits::max_printf`).
    max_line: usize,
    /// What printing cut so far.
    cuts: Cuts,
    /// The shapes of the Go values records carry.
    values: Vec<Shape>,
    /// Go values of the record being handled, printed (reused from record to record).
    printed: Vec<u8>,
    /// The range of `printed` of each value field of the record being handled.
    ranges: Vec<std::ops::Range<usize>>,
}

impl Decoder {
    /// Parses every format of the script once and checks it against its fields.
    pub fn new(spec: &ScriptSpec) -> Result<Decoder, EventError> {
        let mut events = Vec::with_capacity(spec.events.len());
        for (event, e) in spec.events.iter().enumerate() {
            events.push(match e {
                EventSpec::Printf { format, args } => {
                    let format = Format::parse(format)
                        .map_err(|source| EventError::Format { event, source })?;
                    check_fields(event, &format, args)?;
                    for (index, f) in args.iter().enumerate() {
                        if let FieldKind::Value { shape, .. } = f.kind
                            && shape as usize >= spec.values.len()
                        {
                            return Err(EventError::UnknownShape {
                                event,
                                index,
                                shape,
                                count: spec.values.len(),
                            });
                        }
                    }
                    Decoded::Printf {
                        format,
                        fields: args.clone(),
                    }
                }
                EventSpec::Exit => Decoded::Exit,
                EventSpec::Backtrace {
                    count,
                    frames,
                    max,
                    fileline,
                } => Decoded::Backtrace {
                    count: *count as usize,
                    frames: *frames as usize,
                    max: *max as usize,
                    fileline: *fileline,
                },
                EventSpec::Error { message } => Decoded::Error(message.clone()),
            });
        }
        Ok(Decoder {
            events,
            frames: Vec::new(),
            max_line: MAX_PRINTF_LEN,
            cuts: Cuts::default(),
            values: spec.values.clone(),
            printed: Vec::new(),
            ranges: Vec::new(),
        })
    }

    /// Prints at most `max` bytes per printf (`-D MAXPRINTFLEN`).
    pub fn with_max_line(mut self, max: usize) -> Decoder {
        self.max_line = max;
        self
    }

    /// The strings printed with the cut mark and the lines cut, so far.
    pub fn cuts(&self) -> Cuts {
        self.cuts
    }

    /// Handles one record: appends what it prints to `out` and says what to do next.
    pub fn handle(&mut self, record: &[u8], out: &mut Vec<u8>) -> Result<Action<'_>, EventError> {
        let header = EVENT_HEADER as usize;
        let Some(id) = record.get(..4) else {
            return Err(EventError::NoHeader { len: record.len() });
        };
        if record.len() < header {
            return Err(EventError::NoHeader { len: record.len() });
        }
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        let body = &record[header..];
        let event = id as usize;
        let Decoder {
            events,
            frames,
            max_line,
            cuts: total_cuts,
            values,
            printed,
            ranges,
        } = self;
        let Some(decoded) = events.get(event) else {
            return Err(EventError::UnknownEvent {
                id,
                count: events.len(),
            });
        };
        let short = |need: usize| EventError::Short {
            event,
            len: record.len(),
            need: need + header,
        };
        match decoded {
            Decoded::Printf { format, fields } => {
                let need = fields.iter().map(field_end).max().unwrap_or(0);
                if body.len() < need {
                    return Err(short(need));
                }
                // Go values first, into one buffer the arguments then borrow.
                printed.clear();
                ranges.clear();
                let mut value_cuts = 0;
                for f in fields {
                    if let FieldKind::Value { len, shape } = f.kind {
                        let at = f.offset as usize;
                        let start = printed.len();
                        value_cuts += crate::govalue::write(
                            &values[shape as usize],
                            &body[at..at + len as usize],
                            printed,
                        );
                        // `%s` prints at most MAX_FIELD bytes of a string: a longer
                        // value is cut here, where the cut can be marked.
                        let mark = lang::limits::CUT_MARK.as_bytes();
                        if printed.len() - start > MAX_FIELD {
                            printed.truncate(start + MAX_FIELD - mark.len());
                            printed.extend_from_slice(mark);
                            value_cuts += 1;
                        }
                        ranges.push(start..printed.len());
                    }
                }
                let mut value_ranges = ranges.iter();
                let mut stack = [Arg::Long(0); STACK_ARGS];
                let mut heap;
                let args: &mut [Arg<'_>] = if fields.len() <= STACK_ARGS {
                    &mut stack[..fields.len()]
                } else {
                    heap = vec![Arg::Long(0); fields.len()];
                    &mut heap
                };
                let kinds = format.arg_kinds();
                for ((slot, f), kind) in args.iter_mut().zip(fields).zip(kinds) {
                    let at = f.offset as usize;
                    *slot = match (f.kind, kind) {
                        (FieldKind::Long, _) => Arg::Long(long_at(body, at)),
                        // Dumped memory is bytes, NULs included.
                        (FieldKind::Str { len }, ArgKind::Memory) => {
                            Arg::Str(&body[at..at + len as usize])
                        }
                        (FieldKind::Str { len }, _) => {
                            string_arg(cstr(&body[at..at + len as usize]), len as usize - 1)
                        }
                        (FieldKind::Value { .. }, _) => {
                            Arg::Str(&printed[value_ranges.next().cloned().unwrap_or(0..0)])
                        }
                    };
                }
                let mut cuts = write_line(format, out, args, *max_line)
                    .map_err(|source| EventError::Args { event, source })?;
                cuts.values = value_cuts;
                total_cuts.add(cuts);
                Ok(Action::Continue)
            }
            Decoded::Exit => Ok(Action::Exit),
            Decoded::Error(m) => Ok(Action::Error(m)),
            &Decoded::Backtrace {
                count,
                frames: at_frames,
                max,
                fileline,
            } => {
                if body.len() < count + 8 {
                    return Err(short(count + 8));
                }
                let word = long_at(body, count) as u64;
                let n = usize::try_from(word & bpf::script::STACK_COUNT_MASK)
                    .unwrap_or(usize::MAX)
                    .min(max);
                let need = at_frames + 8 * n;
                if body.len() < need {
                    return Err(short(need));
                }
                frames.clear();
                frames.extend((0..n).map(|i| long_at(body, at_frames + 8 * i) as u64));
                Ok(Action::Backtrace {
                    frames,
                    fileline,
                    first_is_return: word & bpf::script::FIRST_IS_RETURN != 0,
                    bias: word & bpf::script::STACK_BIAS_MASK,
                })
            }
        }
    }
}

fn field_end(f: &Field) -> usize {
    f.offset as usize
        + match f.kind {
            FieldKind::Long => 8,
            FieldKind::Str { len } | FieldKind::Value { len, .. } => len as usize,
        }
}

/// The format's arguments must be the record's fields, in order and of the same kinds.
fn check_fields(event: usize, format: &Format, fields: &[Field]) -> Result<(), EventError> {
    let kinds = format.arg_kinds();
    if kinds.len() != fields.len() {
        return Err(EventError::FieldCount {
            event,
            expected: kinds.len(),
            got: fields.len(),
        });
    }
    for (index, (k, f)) in kinds.iter().zip(fields).enumerate() {
        let ok = matches!(
            (k, f.kind),
            (ArgKind::Long | ArgKind::Float, FieldKind::Long)
                | (ArgKind::Str | ArgKind::Memory, FieldKind::Str { .. })
                | (ArgKind::Str, FieldKind::Value { .. })
        );
        if !ok {
            return Err(EventError::FieldKind {
                event,
                index,
                expected: *k,
            });
        }
    }
    Ok(())
}

/// The long at `at`; the caller has checked the record is long enough.
fn long_at(body: &[u8], at: usize) -> i64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[at..at + 8]);
    i64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(events: Vec<EventSpec>) -> ScriptSpec {
        ScriptSpec {
            events,
            ..ScriptSpec::default()
        }
    }

    /// A record: the event id, 4 bytes of padding, then the body.
    fn record(id: u32, body: &[u8]) -> Vec<u8> {
        let mut r = id.to_le_bytes().to_vec();
        r.extend_from_slice(&[0; 4]);
        r.extend_from_slice(body);
        r
    }

    fn newstack_spec() -> ScriptSpec {
        spec(vec![
            EventSpec::Printf {
                format: b"%s: %d -> %d\n".to_vec(),
                args: vec![
                    Field {
                        offset: 16,
                        kind: FieldKind::Str { len: 16 },
                    },
                    Field {
                        offset: 0,
                        kind: FieldKind::Long,
                    },
                    Field {
                        offset: 8,
                        kind: FieldKind::Long,
                    },
                ],
            },
            EventSpec::Exit,
            EventSpec::Error {
                message: "division by 0 near operator '/' at x.stp:1:20".into(),
            },
            EventSpec::Backtrace {
                count: 0,
                frames: 8,
                max: 3,
                fileline: true,
            },
        ])
    }

    #[test]
    fn printf_reads_fields_at_their_offsets() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&8192i64.to_le_bytes()); // offset 0: old size
        body.extend_from_slice(&(-1i64).to_le_bytes()); // offset 8: new size
        body.extend_from_slice(b"main.f\0garbage\0\0"); // offset 16: 16-byte string slot
        let mut out = Vec::new();
        assert_eq!(
            d.handle(&record(0, &body), &mut out).unwrap(),
            Action::Continue
        );
        assert_eq!(out, b"main.f: 8192 -> -1\n");
    }

    #[test]
    fn short_or_unknown_records_are_errors() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            d.handle(&record(0, &[0; 31]), &mut out),
            Err(EventError::Short { need: 40, .. })
        ));
        assert!(matches!(
            d.handle(&record(9, &[]), &mut out),
            Err(EventError::UnknownEvent { id: 9, count: 4 })
        ));
        assert!(matches!(
            d.handle(&[1, 0, 0], &mut out),
            Err(EventError::NoHeader { len: 3 })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn exit_error_and_backtrace_records() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        let mut out = Vec::new();
        assert_eq!(d.handle(&record(1, &[]), &mut out).unwrap(), Action::Exit);
        assert_eq!(
            d.handle(&record(2, &[]), &mut out).unwrap(),
            Action::Error("division by 0 near operator '/' at x.stp:1:20")
        );
        // A count of 5 is cut to the 3 frames the record has room for.
        let mut body = 5u64.to_le_bytes().to_vec();
        for pc in [0x401000u64, 0x402000, 0x403000] {
            body.extend_from_slice(&pc.to_le_bytes());
        }
        assert_eq!(
            d.handle(&record(3, &body), &mut out).unwrap(),
            Action::Backtrace {
                frames: &[0x401000, 0x402000, 0x403000],
                fileline: true,
                first_is_return: false,
                bias: 0,
            }
        );
        assert!(d.handle(&record(3, &body[..20]), &mut out).is_err());
    }

    #[test]
    fn formats_are_checked_against_fields_once() {
        let bad = |format: &[u8], kind| {
            Decoder::new(&spec(vec![EventSpec::Printf {
                format: format.to_vec(),
                args: vec![Field { offset: 0, kind }],
            }]))
            .err()
        };
        assert!(matches!(
            bad(b"%d\n", FieldKind::Str { len: 8 }),
            Some(EventError::FieldKind { index: 0, .. })
        ));
        assert!(matches!(
            bad(b"%d %d\n", FieldKind::Long),
            Some(EventError::FieldCount {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            bad(b"%lld", FieldKind::Long),
            Some(EventError::Format { .. })
        ));
        assert!(bad(b"%5s|", FieldKind::Str { len: 8 }).is_none());
    }

    /// A string that fills its slot is read whole, and marked: it reached the string
    /// limit, so it may have been cut.
    #[test]
    fn a_string_filling_its_slot_is_read_whole_and_marked() {
        let mut d = Decoder::new(&spec(vec![EventSpec::Printf {
            format: b"[%s]".to_vec(),
            args: vec![Field {
                offset: 0,
                kind: FieldKind::Str { len: 4 },
            }],
        }]))
        .unwrap();
        let mut out = Vec::new();
        d.handle(&record(0, b"abcd"), &mut out).unwrap();
        d.handle(&record(0, b"\0bcd"), &mut out).unwrap();
        d.handle(&record(0, b"ab\0d"), &mut out).unwrap();
        assert_eq!(out, "[abcd…][][ab]".as_bytes());
        assert_eq!(d.cuts().strings, 1);
    }

    /// A Go value field is printed through its shape, and what its plan cut is
    /// marked and counted.
    #[test]
    fn go_values_print_through_their_shape() {
        use bpf::govalue::{Addr, Len, Node, NodeKind, Region, Shape};
        // The field: the bias, one 8-byte region, then two status bytes.
        let shape = Shape {
            regions: vec![Region {
                at: 8,
                max: 8,
                status: 1,
                count_at: None,
                addr: Addr::Root { index: 0 },
                len: Len::Max,
                after: None,
                guards: Vec::new(),
                heap: false,
            }],
            nodes: vec![
                Node {
                    at: 8,
                    status: 1,
                    kind: NodeKind::Int {
                        size: 8,
                        signed: true,
                    },
                },
                Node {
                    at: 0,
                    status: 0,
                    kind: NodeKind::Cut,
                },
                Node {
                    at: 8,
                    status: 1,
                    kind: NodeKind::Struct {
                        fields: vec![("A".into(), 0), ("B".into(), 1)],
                        more: false,
                    },
                },
            ],
            root: 2,
            len: 24,
            status_at: 16,
            statuses: 2,
            ..Shape::default()
        };
        let mut d = Decoder::new(&ScriptSpec {
            events: vec![EventSpec::Printf {
                format: b"<%s>".to_vec(),
                args: vec![Field {
                    offset: 0,
                    kind: FieldKind::Value { len: 24, shape: 0 },
                }],
            }],
            values: vec![shape],
            ..ScriptSpec::default()
        })
        .unwrap();
        let mut body = 0u64.to_le_bytes().to_vec();
        body.extend_from_slice(&(-5i64).to_le_bytes());
        body.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        d.handle(&record(0, &body), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<{A:-5 B:…}>");
        assert_eq!(d.cuts().values, 1);
        // A value whose region's read faulted prints `?`.
        body[17] = 2;
        let mut out = Vec::new();
        d.handle(&record(0, &body), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<?>");
    }

    #[test]
    fn many_arguments_are_gathered_on_the_heap() {
        let n = STACK_ARGS + 8;
        let args = (0..n)
            .map(|i| Field {
                offset: 8 * i as u32,
                kind: FieldKind::Long,
            })
            .collect();
        let mut d = Decoder::new(&spec(vec![EventSpec::Printf {
            format: b"%d ".repeat(n),
            args,
        }]))
        .unwrap();
        let body: Vec<u8> = (0..n as i64).flat_map(|i| i.to_le_bytes()).collect();
        let mut out = Vec::new();
        d.handle(&record(0, &body), &mut out).unwrap();
        let want: String = (0..n).map(|i| format!("{i} ")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
