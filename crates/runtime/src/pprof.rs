//! Profiles in pprof's format (`profile.proto`, gzipped), which `go tool pprof` reads
//! as it reads the profiles `runtime/pprof` writes. A [`Profile`] is filled with
//! samples (a stack of program counters, the frames each one stands for, values and
//! labels) and written once; the messages are declared here with `prost`'s derive,
//! field numbers as `profile.proto` gives them.
//!
//! Each distinct program counter is one `Location`, its frames (inlined calls first,
//! as pprof lists them) the location's lines; each distinct function one `Function`.
//! Every string goes through the string table, whose entry 0 is the empty string.

use std::collections::HashMap;
use std::io::Write;

use prost::Message;

/// One function's frame at a program counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// A sample label's value: a string or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelValue {
    Str(String),
    Num(i64),
}

/// A sample of a [`Profile`], read back: its stack (innermost first, each program
/// counter with its frames), its values (one per sample type) and its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added<'a> {
    pub stack: Vec<(u64, Vec<Frame>)>,
    pub values: &'a [i64],
    pub labels: Vec<(&'a str, LabelValue)>,
}

/// A profile being built: its sample types (`(type, unit)`, such as
/// `("delay", "nanoseconds")`), the period, and the samples added.
#[derive(Debug)]
pub struct Profile {
    msg: Proto,
    strings: HashMap<String, i64>,
    locations: HashMap<u64, u64>,
    functions: HashMap<(String, String), u64>,
}

impl Profile {
    /// A profile whose samples carry one value per `sample_types` entry, taken every
    /// `period` of `period_type`, over `duration_nanos` from `time_nanos` (Unix).
    pub fn new(
        sample_types: &[(&str, &str)],
        period_type: (&str, &str),
        period: i64,
        time_nanos: i64,
        duration_nanos: i64,
    ) -> Profile {
        let mut p = Profile {
            msg: Proto::default(),
            strings: HashMap::new(),
            locations: HashMap::new(),
            functions: HashMap::new(),
        };
        p.string("");
        for (t, u) in sample_types {
            let v = p.value_type(t, u);
            p.msg.sample_type.push(v);
        }
        p.msg.period_type = Some(p.value_type(period_type.0, period_type.1));
        p.msg.period = period;
        p.msg.time_nanos = time_nanos;
        p.msg.duration_nanos = duration_nanos;
        // One mapping stands for the program: the locations carry their lines, so
        // pprof needs no binary to name them.
        p.msg.mapping.push(Mapping {
            id: 1,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Mapping::default()
        });
        p
    }

    /// Adds a sample: `stack` innermost first, each program counter with its frames
    /// (innermost inlined call first); `values` one per sample type.
    pub fn add(
        &mut self,
        stack: &[(u64, Vec<Frame>)],
        values: &[i64],
        labels: &[(&str, LabelValue)],
    ) {
        let location_id = stack
            .iter()
            .map(|(pc, frames)| self.location(*pc, frames))
            .collect();
        let label = labels
            .iter()
            .map(|(k, v)| {
                let key = self.string(k);
                match v {
                    LabelValue::Str(s) => Label {
                        key,
                        str: self.string(s),
                        ..Label::default()
                    },
                    LabelValue::Num(n) => Label {
                        key,
                        num: *n,
                        ..Label::default()
                    },
                }
            })
            .collect();
        self.msg.sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
    }

    /// Writes the profile, gzipped, as `runtime/pprof` does.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        gz.write_all(&self.msg.encode_to_vec())?;
        gz.finish()?.flush()
    }

    /// The sample types, `(type, unit)`, in the order of each sample's values.
    pub fn sample_types(&self) -> Vec<(&str, &str)> {
        self.msg
            .sample_type
            .iter()
            .map(|v| (self.text(v.r#type), self.text(v.unit)))
            .collect()
    }

    /// The period's type and unit, and the period.
    pub fn period(&self) -> ((&str, &str), i64) {
        let t = self.msg.period_type.as_ref();
        (
            (
                t.map_or("", |v| self.text(v.r#type)),
                t.map_or("", |v| self.text(v.unit)),
            ),
            self.msg.period,
        )
    }

    /// When the profile began (Unix nanoseconds) and how long it lasted.
    pub fn time_nanos(&self) -> (i64, i64) {
        (self.msg.time_nanos, self.msg.duration_nanos)
    }

    /// The samples as they were added, read back from the tables, for another
    /// format to carry (OTLP's profiles signal, in `export::profiles`).
    pub fn samples(&self) -> Vec<Added<'_>> {
        let functions: HashMap<u64, &Function> =
            self.msg.function.iter().map(|f| (f.id, f)).collect();
        let locations: HashMap<u64, &Location> =
            self.msg.location.iter().map(|l| (l.id, l)).collect();
        let frame = |line: &Line| {
            let f = functions.get(&line.function_id);
            Frame {
                function: f.map_or("", |f| self.text(f.name)).to_string(),
                file: f.map_or("", |f| self.text(f.filename)).to_string(),
                line: line.line,
            }
        };
        self.msg
            .sample
            .iter()
            .map(|s| Added {
                stack: s
                    .location_id
                    .iter()
                    .filter_map(|id| locations.get(id))
                    .map(|l| (l.address, l.line.iter().map(frame).collect()))
                    .collect(),
                values: &s.value,
                labels: s
                    .label
                    .iter()
                    .map(|l| {
                        let v = if l.str != 0 {
                            LabelValue::Str(self.text(l.str).to_string())
                        } else {
                            LabelValue::Num(l.num)
                        };
                        (self.text(l.key), v)
                    })
                    .collect(),
            })
            .collect()
    }

    fn text(&self, i: i64) -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.msg.string_table.get(i))
            .map_or("", String::as_str)
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = self.msg.string_table.len() as i64;
        self.msg.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, t: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(t),
            unit: self.string(unit),
        }
    }

    fn location(&mut self, pc: u64, frames: &[Frame]) -> u64 {
        if let Some(id) = self.locations.get(&pc) {
            return *id;
        }
        let line = frames
            .iter()
            .map(|f| Line {
                function_id: self.function(f),
                line: f.line,
            })
            .collect();
        let id = self.msg.location.len() as u64 + 1;
        self.msg.location.push(Location {
            id,
            mapping_id: 1,
            address: pc,
            line,
        });
        self.locations.insert(pc, id);
        id
    }

    fn function(&mut self, f: &Frame) -> u64 {
        let key = (f.function.clone(), f.file.clone());
        if let Some(id) = self.functions.get(&key) {
            return *id;
        }
        let id = self.msg.function.len() as u64 + 1;
        let name = self.string(&f.function);
        let filename = self.string(&f.file);
        self.msg.function.push(Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }
}

// `profile.proto`'s messages, as far as gotap fills them.

#[derive(Clone, PartialEq, Message)]
struct Proto {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    memory_start: u64,
    #[prost(uint64, tag = "3")]
    memory_limit: u64,
    #[prost(uint64, tag = "4")]
    file_offset: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
    #[prost(bool, tag = "8")]
    has_filenames: bool,
    #[prost(bool, tag = "9")]
    has_line_numbers: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
    #[prost(int64, tag = "5")]
    start_line: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.into(),
            file: "/src/main.go".into(),
            line,
        }
    }

    #[test]
    fn samples_read_back_as_they_were_added() {
        let mut p = Profile::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10,
            5,
            7,
        );
        let inlined = (0x20, vec![frame("main.leaf", 3), frame("main.caller", 9)]);
        let a = vec![inlined.clone(), (0x30, vec![frame("main.main", 20)])];
        let b = vec![(0x40, vec![frame("main.other", 4)]), inlined];
        p.add(&a, &[2, 20], &[("goroutine", LabelValue::Num(1))]);
        p.add(&b, &[1, 10], &[("reason", LabelValue::Str("chan".into()))]);
        assert_eq!(
            p.samples(),
            vec![
                Added {
                    stack: a,
                    values: &[2, 20],
                    labels: vec![("goroutine", LabelValue::Num(1))],
                },
                Added {
                    stack: b,
                    values: &[1, 10],
                    labels: vec![("reason", LabelValue::Str("chan".into()))],
                },
            ]
        );
        assert_eq!(
            p.sample_types(),
            vec![("samples", "count"), ("cpu", "nanoseconds")]
        );
        assert_eq!(p.period(), (("cpu", "nanoseconds"), 10));
        assert_eq!(p.time_nanos(), (5, 7));
    }
}
