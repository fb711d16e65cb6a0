//! Decoding the records compiled probes send through the ring buffer, and writing
//! them as text. A [`Decoder`] is built once per script from its [`ScriptSpec`]:
//! every `printf` format is parsed and checked against its fields then. Decoding a
//! record ([`Decoder::decode`]) says which event it is and reads its typed values
//! ([`Value`]) at fixed offsets, borrowed from the record's bytes, with no allocation
//! per event (a backtrace's frames go to a buffer the decoder reuses). What consumes
//! a record reads those values: [`Text`] writes a `printf` with its parsed format
//! (the script's output, and the JSON writer's `printf` objects), and the tools read
//! their numbers and stacks as they are, never from printed text.
//!
//! A record is the event id (`u32` little endian, an index into
//! [`ScriptSpec::events`]), 4 bytes of the hit's tag, then the fields at their offsets
//! counted from the end of that header. A record too short for its event, or with
//! an unknown id, is an error, never a panic: the bytes come from the kernel.
//!
//! A Go value sent whole (`$x$`, [`FieldKind::Value`]) is a [`Value::Go`]: its bytes
//! and the shape that lays them out. [`Text`] prints it as Go's `%+v` prints it
//! ([`crate::govalue`]), as the string its `%s` prints; a float read from the
//! program is a [`Value::Float`].

use bpf::govalue::Shape;
use bpf::script::{EVENT_HEADER, EventSpec, Field, FieldKind, ScriptSpec};
use thiserror::Error;

use lang::format::{ArgKind, Format, FormatError, MAX_FIELD, Piece};

use crate::format::{Arg, ArgError, Cuts, MAX_PRINTF_LEN, write_line};
use crate::globals::cstr;
use crate::stacks::{StackText, Stacks};

/// One record, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'r> {
    /// `printf` (and `print`, `println`, `print_usyms`): its values, for its format.
    Printf(Printf<'r>),
    /// The script called `exit()`: run the `end` probes and stop.
    Exit,
    /// The probe hit an error it cannot go on from; the message as stap words it
    /// (the CLI prints `ERROR: ` and the message, then ends the run).
    Error(&'r str),
    /// `print_ubacktrace*()`: a walk's frames.
    Backtrace(Backtrace<'r>),
}

/// A `printf` record: its event, its format and its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Printf<'r> {
    /// Its index in [`ScriptSpec::events`].
    pub event: usize,
    pub format: &'r Format,
    slots: &'r [Slot],
    body: &'r [u8],
    shapes: &'r [Shape],
}

/// One value of a record, as the probe sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'r> {
    Long(i64),
    /// A string, up to its NUL; `cut` when it filled its slot (it reached the
    /// string limit, so it may have been cut).
    Str {
        bytes: &'r [u8],
        cut: bool,
    },
    /// The bytes `%m`/`%M` dumped, NULs included.
    Bytes(&'r [u8]),
    /// A `ubacktrace()` value (`bpf::script::STACK_ID_MASK`).
    Stack(u64),
    /// A floating-point value read from the program (`%f`, `%e`, `%g`).
    Float(f64),
    /// A Go value sent whole (`$x$`): its bytes, laid out by its shape.
    Go {
        bytes: &'r [u8],
        shape: &'r Shape,
    },
}

/// A `print_ubacktrace*()` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backtrace<'r> {
    /// The probe's pc (or, with `first_is_return`, a return address), then return
    /// addresses, some maybe marked `bpf::script::TENTATIVE` (see
    /// `symbolize::Symbolizer::logical`).
    pub frames: &'r [u64],
    /// `print_ubacktrace_fileline()`: with each frame's file and line.
    pub fileline: bool,
    pub first_is_return: bool,
    /// The load bias of the binary in the process the stack is from.
    pub bias: u64,
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

/// Where a value of a `printf` record is, and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    offset: usize,
    kind: SlotKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    Long,
    Float,
    Str {
        len: usize,
    },
    Bytes {
        len: usize,
    },
    Stack,
    /// A Go value: `len` bytes, laid out by shape `shape` of the script's.
    Go {
        len: usize,
        shape: usize,
    },
}

impl Slot {
    fn end(&self) -> usize {
        self.offset
            + match self.kind {
                SlotKind::Long | SlotKind::Float | SlotKind::Stack => 8,
                SlotKind::Str { len } | SlotKind::Bytes { len } | SlotKind::Go { len, .. } => len,
            }
    }
}

enum Event {
    Printf {
        format: Format,
        slots: Vec<Slot>,
        /// The bytes the fields need after the header.
        need: usize,
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

/// Turns ring buffer records into [`Record`]s.
pub struct Decoder {
    events: Vec<Event>,
    frames: Vec<u64>,
    /// The shapes of the Go values records carry.
    shapes: Vec<Shape>,
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
                    let slots = slots(event, &format, args, spec.values.len())?;
                    let need = slots.iter().map(Slot::end).max().unwrap_or(0);
                    Event::Printf {
                        format,
                        slots,
                        need,
                    }
                }
                EventSpec::Exit => Event::Exit,
                EventSpec::Backtrace {
                    count,
                    frames,
                    max,
                    fileline,
                } => Event::Backtrace {
                    count: *count as usize,
                    frames: *frames as usize,
                    max: *max as usize,
                    fileline: *fileline,
                },
                EventSpec::Error { message } => Event::Error(message.clone()),
            });
        }
        Ok(Decoder {
            events,
            frames: Vec::new(),
            shapes: spec.values.clone(),
        })
    }

    /// Which event `record` is, with its values.
    pub fn decode<'r>(&'r mut self, record: &'r [u8]) -> Result<Record<'r>, EventError> {
        let header = EVENT_HEADER as usize;
        if record.len() < header {
            return Err(EventError::NoHeader { len: record.len() });
        }
        let id = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
        let body = &record[header..];
        let event = id as usize;
        let Some(decoded) = self.events.get(event) else {
            return Err(EventError::UnknownEvent {
                id,
                count: self.events.len(),
            });
        };
        let short = |need: usize| EventError::Short {
            event,
            len: record.len(),
            need: need + header,
        };
        match decoded {
            Event::Printf {
                format,
                slots,
                need,
            } => {
                if body.len() < *need {
                    return Err(short(*need));
                }
                Ok(Record::Printf(Printf {
                    event,
                    format,
                    slots,
                    body,
                    shapes: &self.shapes,
                }))
            }
            Event::Exit => Ok(Record::Exit),
            Event::Error(m) => Ok(Record::Error(m)),
            &Event::Backtrace {
                count,
                frames,
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
                let need = frames + 8 * n;
                if body.len() < need {
                    return Err(short(need));
                }
                self.frames.clear();
                self.frames
                    .extend((0..n).map(|i| long_at(body, frames + 8 * i) as u64));
                Ok(Record::Backtrace(Backtrace {
                    frames: &self.frames,
                    fileline,
                    first_is_return: word & bpf::script::FIRST_IS_RETURN != 0,
                    bias: word & bpf::script::STACK_BIAS_MASK,
                }))
            }
        }
    }
}

impl<'r> Printf<'r> {
    /// How many values the record has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Value `i`, if the record has one.
    pub fn value(&self, i: usize) -> Option<Value<'r>> {
        self.slots.get(i).map(|s| read(s, self.body, self.shapes))
    }

    /// The values, in the format's order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = Value<'r>> + 'r {
        let (body, shapes) = (self.body, self.shapes);
        self.slots.iter().map(move |s| read(s, body, shapes))
    }

    /// Value `i` as a long: 0 if it is not one (a tool's own script says what each
    /// value is).
    pub fn long(&self, i: usize) -> i64 {
        match self.value(i) {
            Some(Value::Long(v)) => v,
            _ => 0,
        }
    }

    /// The format's first word: its literal text up to the first space or
    /// conversion (`"grow"` for `"grow %d %d\n"`), by which a tool tells its
    /// records apart.
    pub fn tag(&self) -> &'r [u8] {
        let lead = match self.format.pieces().first() {
            Some(Piece::Literal(r)) => self.format.literal(r),
            _ => &[],
        };
        let end = lead.iter().position(|b| *b == b' ').unwrap_or(lead.len());
        &lead[..end]
    }
}

/// Writes records as text, as the script prints them: a `printf` with its format,
/// its stacks as [`StackText`] says, its Go values as Go's `%+v`, a backtrace's
/// frames a line each. Counts what printing cut.
pub struct Text {
    /// The most bytes one printf prints (`lang::Limits::max_printf`).
    max_line: usize,
    cuts: Cuts,
    /// The text of the stacks and Go values of the record being written, reused.
    texts: Vec<u8>,
}

impl Default for Text {
    fn default() -> Self {
        Text::new(MAX_PRINTF_LEN)
    }
}

impl Text {
    /// Prints at most `max_line` bytes per printf (`-D MAXPRINTFLEN`).
    pub fn new(max_line: usize) -> Text {
        Text {
            max_line,
            cuts: Cuts::default(),
            texts: Vec::new(),
        }
    }

    /// The strings printed with the cut mark and the lines cut, so far.
    pub fn cuts(&self) -> Cuts {
        self.cuts
    }

    /// Appends what `record` prints to `out` (nothing for `exit()` and errors).
    pub fn write(
        &mut self,
        record: &Record<'_>,
        stacks: &mut Stacks<'_, '_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EventError> {
        match record {
            Record::Printf(p) => self.printf(p, stacks, out),
            Record::Backtrace(b) => {
                stacks.write_backtrace(b, out);
                Ok(())
            }
            Record::Exit | Record::Error(_) => Ok(()),
        }
    }

    /// Appends the line a `printf` record prints. A stack's text does not count
    /// towards the printf limit: its frames are not what the probe sent.
    pub fn printf(
        &mut self,
        p: &Printf<'_>,
        stacks: &mut dyn StackText,
        out: &mut Vec<u8>,
    ) -> Result<(), EventError> {
        // The stacks and Go values first, into one buffer the arguments then
        // borrow: where each value's text ends in `self.texts`.
        self.texts.clear();
        let mut small = [0usize; STACK_ARGS];
        let mut large;
        let ends: &mut [usize] = if p.len() <= STACK_ARGS {
            &mut small[..p.len()]
        } else {
            large = vec![0; p.len()];
            &mut large
        };
        let (mut stack_bytes, mut value_cuts) = (0, 0);
        for (e, v) in ends.iter_mut().zip(p.values()) {
            let start = self.texts.len();
            match v {
                Value::Stack(s) => {
                    stacks.write_stack(s, &mut self.texts);
                    stack_bytes += self.texts.len() - start;
                }
                Value::Go { bytes, shape } => {
                    value_cuts += go_value(shape, bytes, &mut self.texts);
                }
                _ => {}
            }
            *e = self.texts.len();
        }
        let ends = &*ends;
        let text = &self.texts;
        let mut stack = [Arg::Long(0); STACK_ARGS];
        let mut heap;
        let args: &mut [Arg<'_>] = if p.len() <= STACK_ARGS {
            &mut stack[..p.len()]
        } else {
            heap = vec![Arg::Long(0); p.len()];
            &mut heap
        };
        let mut from = 0;
        for ((slot, v), &to) in args.iter_mut().zip(p.values()).zip(ends) {
            *slot = match v {
                Value::Long(n) => Arg::Long(n),
                Value::Float(f) => Arg::Long(f.to_bits() as i64),
                Value::Str { bytes, cut: false } => Arg::Str(bytes),
                Value::Str { bytes, cut: true } => Arg::Cut(bytes),
                Value::Bytes(b) => Arg::Str(b),
                Value::Stack(_) | Value::Go { .. } => Arg::Str(&text[from..to]),
            };
            from = to;
        }
        let max = self.max_line.saturating_add(stack_bytes);
        let mut cuts = write_line(p.format, out, args, max).map_err(|source| EventError::Args {
            event: p.event,
            source,
        })?;
        cuts.values = value_cuts;
        self.cuts.add(cuts);
        Ok(())
    }
}

/// Writes a Go value as Go's `%+v` prints it; how many cuts it printed. `%s` prints
/// at most `MAX_FIELD` bytes of a string: a longer value is cut here, where the cut
/// can be marked.
fn go_value(shape: &Shape, bytes: &[u8], out: &mut Vec<u8>) -> u64 {
    let start = out.len();
    let mut cuts = crate::govalue::write(shape, bytes, out);
    let mark = lang::limits::CUT_MARK.as_bytes();
    if out.len() - start > MAX_FIELD {
        out.truncate(start + MAX_FIELD - mark.len());
        out.extend_from_slice(mark);
        cuts += 1;
    }
    cuts
}

/// The slots of a format's arguments: the record's fields, in order and of the kinds
/// the format takes (a stack for a `%s`).
fn slots(
    event: usize,
    format: &Format,
    fields: &[Field],
    shapes: usize,
) -> Result<Vec<Slot>, EventError> {
    let kinds = format.arg_kinds();
    if kinds.len() != fields.len() {
        return Err(EventError::FieldCount {
            event,
            expected: kinds.len(),
            got: fields.len(),
        });
    }
    let mut out = Vec::with_capacity(fields.len());
    for (index, (k, f)) in kinds.iter().zip(fields).enumerate() {
        let kind = match (k, f.kind) {
            (ArgKind::Long, FieldKind::Long) => SlotKind::Long,
            (ArgKind::Float, FieldKind::Long) => SlotKind::Float,
            (ArgKind::Str, FieldKind::Value { shape, .. }) if shape as usize >= shapes => {
                return Err(EventError::UnknownShape {
                    event,
                    index,
                    shape,
                    count: shapes,
                });
            }
            (ArgKind::Str, FieldKind::Value { len, shape }) => SlotKind::Go {
                len: len as usize,
                shape: shape as usize,
            },
            (ArgKind::Str, FieldKind::Str { len }) => SlotKind::Str { len: len as usize },
            (ArgKind::Str, FieldKind::Stack) => SlotKind::Stack,
            (ArgKind::Memory, FieldKind::Str { len }) => SlotKind::Bytes { len: len as usize },
            _ => {
                return Err(EventError::FieldKind {
                    event,
                    index,
                    expected: *k,
                });
            }
        };
        out.push(Slot {
            offset: f.offset as usize,
            kind,
        });
    }
    Ok(out)
}

/// The value in `slot` of a record body the decoder checked holds every slot.
fn read<'r>(slot: &Slot, body: &'r [u8], shapes: &'r [Shape]) -> Value<'r> {
    let at = slot.offset;
    match slot.kind {
        SlotKind::Long => Value::Long(long_at(body, at)),
        SlotKind::Float => Value::Float(f64::from_bits(long_at(body, at) as u64)),
        SlotKind::Go { len, shape } => Value::Go {
            bytes: &body[at..at + len],
            shape: &shapes[shape],
        },
        SlotKind::Stack => Value::Stack(long_at(body, at) as u64),
        SlotKind::Bytes { len } => Value::Bytes(&body[at..at + len]),
        SlotKind::Str { len } => {
            let bytes = cstr(&body[at..at + len]);
            Value::Str {
                bytes,
                cut: bytes.len() + 1 >= len,
            }
        }
    }
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
    use crate::stacks::StackSource;

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

    /// Stacks with one known: id 7, two frames.
    struct OneStack;

    impl StackSource for OneStack {
        fn read(&mut self, id: u64) -> Option<Vec<u64>> {
            (id == 7).then(|| vec![2, 0x401000, 0x402000])
        }
    }

    fn stacks() -> Stacks<'static, 'static> {
        Stacks::new(Box::new(OneStack), None)
    }

    /// The text of one record.
    fn text(d: &mut Decoder, rec: &[u8]) -> String {
        let mut out = Vec::new();
        let r = d.decode(rec).unwrap();
        Text::default().write(&r, &mut stacks(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn newstack_spec() -> ScriptSpec {
        spec(vec![
            EventSpec::Printf {
                format: b"grow %s: %d -> %d\n".to_vec(),
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
            EventSpec::Printf {
                format: b"[%-5s|%s]".to_vec(),
                args: vec![
                    Field {
                        offset: 0,
                        kind: FieldKind::Stack,
                    },
                    Field {
                        offset: 8,
                        kind: FieldKind::Stack,
                    },
                ],
            },
        ])
    }

    fn newstack_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&8192i64.to_le_bytes()); // offset 0: old size
        body.extend_from_slice(&(-1i64).to_le_bytes()); // offset 8: new size
        body.extend_from_slice(b"main.f\0garbage\0\0"); // offset 16: 16-byte string slot
        body
    }

    #[test]
    fn printf_values_are_read_at_their_offsets() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        let rec = record(0, &newstack_body());
        let Record::Printf(p) = d.decode(&rec).unwrap() else {
            panic!("not a printf");
        };
        assert_eq!((p.event, p.len(), p.tag()), (0, 3, &b"grow"[..]));
        let values: Vec<Value<'_>> = p.values().collect();
        assert_eq!(
            values,
            [
                Value::Str {
                    bytes: b"main.f",
                    cut: false
                },
                Value::Long(8192),
                Value::Long(-1)
            ]
        );
        assert_eq!((p.long(1), p.long(0), p.value(3)), (8192, 0, None));
        assert_eq!(text(&mut d, &rec), "grow main.f: 8192 -> -1\n");
    }

    #[test]
    fn stacks_are_ids_until_printed() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        let mut body = 7u64.to_le_bytes().to_vec();
        body.extend_from_slice(&9u64.to_le_bytes());
        let rec = record(4, &body);
        let Record::Printf(p) = d.decode(&rec).unwrap() else {
            panic!("not a printf");
        };
        assert_eq!(p.value(0), Some(Value::Stack(7)));
        // The width applies to the stack's text; an unknown stack prints its id.
        assert_eq!(
            text(&mut d, &rec),
            "[0x401000 0x402000|<stack 0000000000000009>]"
        );
    }

    #[test]
    fn short_or_unknown_records_are_errors() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        assert!(matches!(
            d.decode(&record(0, &[0; 31])),
            Err(EventError::Short { need: 40, .. })
        ));
        assert!(matches!(
            d.decode(&record(9, &[])),
            Err(EventError::UnknownEvent { id: 9, count: 5 })
        ));
        assert!(matches!(
            d.decode(&[1, 0, 0]),
            Err(EventError::NoHeader { len: 3 })
        ));
    }

    #[test]
    fn exit_error_and_backtrace_records() {
        let mut d = Decoder::new(&newstack_spec()).unwrap();
        assert_eq!(d.decode(&record(1, &[])).unwrap(), Record::Exit);
        assert_eq!(
            d.decode(&record(2, &[])).unwrap(),
            Record::Error("division by 0 near operator '/' at x.stp:1:20")
        );
        // A count of 5 is cut to the 3 frames the record has room for.
        let mut body = 5u64.to_le_bytes().to_vec();
        for pc in [0x401000u64, 0x402000, 0x403000] {
            body.extend_from_slice(&pc.to_le_bytes());
        }
        assert_eq!(
            d.decode(&record(3, &body)).unwrap(),
            Record::Backtrace(Backtrace {
                frames: &[0x401000, 0x402000, 0x403000],
                fileline: true,
                first_is_return: false,
                bias: 0,
            })
        );
        assert!(d.decode(&record(3, &body[..20])).is_err());
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
            bad(b"%d\n", FieldKind::Stack),
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
        let mut w = Text::default();
        let mut out = Vec::new();
        for body in [b"abcd", b"\0bcd", b"ab\0d"] {
            let rec = record(0, body);
            let r = d.decode(&rec).unwrap();
            w.write(&r, &mut stacks(), &mut out).unwrap();
        }
        assert_eq!(out, "[abcd…][][ab]".as_bytes());
        assert_eq!(w.cuts().strings, 1);
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
        let rec = record(0, &body);
        let Record::Printf(p) = d.decode(&rec).unwrap() else {
            panic!("not a printf");
        };
        assert!(matches!(p.value(0), Some(Value::Go { bytes, .. }) if bytes.len() == 24));
        let mut w = Text::default();
        let mut out = Vec::new();
        w.write(&Record::Printf(p), &mut stacks(), &mut out)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<{A:-5 B:…}>");
        assert_eq!(w.cuts().values, 1);
        // A value whose region's read faulted prints `?`.
        body[17] = 2;
        let mut out = Vec::new();
        let rec = record(0, &body);
        let r = d.decode(&rec).unwrap();
        w.write(&r, &mut stacks(), &mut out).unwrap();
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
        let want: String = (0..n).map(|i| format!("{i} ")).collect();
        assert_eq!(text(&mut d, &record(0, &body)), want);
    }
}
