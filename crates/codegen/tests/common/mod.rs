//! Shared by the codegen tests: check and compile a script against a real Go
//! executable, load it through the kernel's verifier, and run it on a real process
//! with real uprobes, collecting its ring buffer records and globals.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bpf::script::{EVENT_HEADER, EventSpec, FieldKind, GlobalShape, GlobalSpec, ScriptSpec};
use codegen::{Compiled, GoTarget, Options};
use gobin::GoBinary;
use lang::{ParseOptions, SourceMap};

/// Parses, checks and compiles `src` against the executable at `bin`; the error is
/// the rendered diagnostics.
pub fn compile(src: &str, bin: &Path) -> Result<Compiled, String> {
    compile_with(src, bin, &Options::default())
}

pub fn compile_with(src: &str, bin: &Path, opts: &Options<'_>) -> Result<Compiled, String> {
    let data = std::fs::read(bin).expect("read the executable");
    let gb = GoBinary::parse(&data).expect("parse the executable");
    let target = GoTarget::new(gb, bin.to_string_lossy());
    let mut sm = SourceMap::new();
    let file = sm.add("test.stp", src);
    let (script, mut diags) = lang::parse(file, src, &ParseOptions::default());
    let (info, d) = lang::check(&script, &target);
    diags.extend(d);
    if lang::has_errors(&diags) {
        return Err(sm.render_all(&diags));
    }
    let opts = Options {
        sources: Some(&sm),
        possible_cpus: sys::possible_cpus().expect("possible CPUs") as u32,
        ..opts.clone()
    };
    codegen::compile_full(&script, &info, &target, &opts).map_err(|d| sm.render_all(&d))
}

/// Loads every map and program; a verifier refusal fails the test with the script
/// position the instruction came from.
pub fn load(c: &Compiled, attach: sys::AttachKind) -> sys::LoadedObject {
    let maps: Vec<sys::Map> = c
        .spec
        .object
        .maps
        .iter()
        .map(|m| sys::Map::create(m).unwrap_or_else(|e| panic!("create map {}: {e}", m.name)))
        .collect();
    let mut programs = Vec::new();
    for (i, p) in c.spec.object.programs.iter().enumerate() {
        let opts = sys::LoadOptions {
            attach,
            verbose_log: false,
        };
        match sys::LoadedProgram::load(p, &maps, opts) {
            Ok(lp) => programs.push(lp),
            Err(sys::Error::Verifier(v)) => {
                let d = c.verifier_diagnostic(i, &v.log);
                panic!(
                    "verifier rejected {}: {} at {:?}\n{}\n{}",
                    p.name,
                    d.message,
                    d.span,
                    c.disassemble(),
                    v.log
                );
            }
            Err(e) => panic!("load {}: {e}", p.name),
        }
    }
    sys::LoadedObject { maps, programs }
}

/// What a traced run produced.
pub struct Run {
    /// Each record, decoded: event, then its long and string fields in order.
    pub records: Vec<Record>,
    pub obj: sys::LoadedObject,
    pub spec: ScriptSpec,
    /// The traced process.
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Long(i64),
    Str(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub event: EventSpec,
    pub values: Vec<Value>,
    /// For backtraces: the frames.
    pub frames: Vec<u64>,
}

impl Record {
    /// A printf record formatted the simple way tests need: `%d` and `%s` only.
    pub fn text(&self) -> String {
        let EventSpec::Printf { format, .. } = &self.event else {
            return format!("{:?}", self.event);
        };
        let mut out = String::new();
        let mut vals = self.values.iter();
        let f = String::from_utf8_lossy(format).into_owned();
        let mut chars = f.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '%' {
                match chars.next() {
                    Some('%') => out.push('%'),
                    Some(_) => match vals.next() {
                        Some(Value::Long(n)) => out.push_str(&n.to_string()),
                        Some(Value::Str(s)) => out.push_str(s),
                        None => {}
                    },
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

fn decode(spec: &ScriptSpec, rec: &[u8]) -> Record {
    let id = u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize;
    let event = spec.events[id].clone();
    let body = &rec[EVENT_HEADER as usize..];
    let mut values = Vec::new();
    let mut frames = Vec::new();
    match &event {
        EventSpec::Printf { args, .. } => {
            for f in args {
                let o = f.offset as usize;
                match f.kind {
                    FieldKind::Long | FieldKind::Stack => values.push(Value::Long(
                        i64::from_le_bytes(body[o..o + 8].try_into().unwrap()),
                    )),
                    FieldKind::Str { len } => {
                        let b = &body[o..o + len as usize];
                        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                        values.push(Value::Str(String::from_utf8_lossy(&b[..n]).into_owned()));
                    }
                    // A Go value, printed as the runtime prints it.
                    FieldKind::Value { len, shape } => {
                        let mut out = Vec::new();
                        runtime::govalue::write(
                            &spec.values[shape as usize],
                            &body[o..o + len as usize],
                            &mut out,
                        );
                        values.push(Value::Str(String::from_utf8_lossy(&out).into_owned()));
                    }
                }
            }
        }
        EventSpec::Backtrace {
            count, frames: f, ..
        } => {
            // The count word also holds flags and the load bias (bpf::script).
            let n = u64::from_le_bytes(
                body[*count as usize..*count as usize + 8]
                    .try_into()
                    .unwrap(),
            ) & bpf::script::STACK_COUNT_MASK;
            for i in 0..n as usize {
                let o = *f as usize + 8 * i;
                frames.push(u64::from_le_bytes(body[o..o + 8].try_into().unwrap()));
            }
        }
        _ => {}
    }
    Record {
        event,
        values,
        frames,
    }
}

/// Loads `c`, attaches every site to `bin` with perf-event uprobes, runs `bin args`,
/// and collects the records.
pub fn run(c: &Compiled, bin: &Path, args: &[&str]) -> Run {
    // One traced process at a time: a child held before exec must not inherit the
    // gate of another one (each would keep the other's pipe open).
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let obj = load(c, sys::AttachKind::PerfEvent);
    let spec = c.spec.clone();
    let rb_map = obj.map(spec.ringbuf.unwrap()).unwrap();
    let mut rb = sys::RingBuf::new(rb_map).expect("ring buffer");
    let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
    let mut child = sys::spawn_held(bin.as_os_str(), &args).expect("start the program");
    let scope = sys::Scope::Pid(child.pid());
    if let Some(s) = &spec.scalars {
        let mut init = s.initial.clone();
        let rt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let mono = monotonic_ns();
        let o = s.realtime_offset as usize;
        init[o..o + 8].copy_from_slice(&(rt - mono).to_le_bytes());
        let o = s.target_offset as usize;
        init[o..o + 8].copy_from_slice(&i64::from(child.pid()).to_le_bytes());
        obj.map(s.map)
            .unwrap()
            .update(&0u32.to_le_bytes(), &init, sys::UpdateFlags::Any)
            .unwrap();
    }
    let mut probes = Vec::new();
    for a in &spec.attachments {
        for s in &a.sites {
            probes.push(
                sys::Uprobe::attach(
                    &obj.programs[a.program],
                    Path::new(&a.binary),
                    s.file_offset,
                    scope,
                    s.cookie,
                )
                .expect("attach"),
            );
        }
    }
    child.release().expect("release the program");
    let mut raw: Vec<Vec<u8>> = Vec::new();
    loop {
        rb.poll(Duration::from_millis(20), |r| raw.push(r.to_vec()))
            .expect("poll");
        if child.try_wait().expect("wait").is_some() {
            break;
        }
    }
    rb.drain(|r| raw.push(r.to_vec())).expect("drain");
    let pid = child.pid();
    drop(probes);
    let records = raw.iter().map(|r| decode(&spec, r)).collect();
    Run {
        records,
        obj,
        spec,
        pid,
    }
}

fn monotonic_ns() -> i64 {
    // /proc/uptime is too coarse; the kernel's monotonic clock is what
    // bpf_ktime_get_ns reads, and /proc/timer_list is not always readable, so take
    // the difference to realtime from the `now at` line of /proc/timer_list when
    // present, else assume the caller does not check wall clock precisely.
    let text = std::fs::read_to_string("/proc/timer_list").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("now at ")
                .and_then(|r| r.split_whitespace().next())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Run {
    pub fn texts(&self) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| matches!(r.event, EventSpec::Printf { .. }))
            .map(Record::text)
            .collect()
    }

    /// The spec of global `name`.
    fn global(&self, name: &str) -> &GlobalSpec {
        self.spec
            .globals
            .iter()
            .find(|g| g.name == name)
            .expect("global")
    }

    /// The value of scalar global `name` (a long).
    pub fn global_long(&self, name: &str) -> i64 {
        let g = self.global(name);
        let GlobalShape::Scalar { offset, .. } = g.shape else {
            panic!("{name} is not a scalar")
        };
        let v = self
            .obj
            .map(g.map)
            .unwrap()
            .get(&0u32.to_le_bytes())
            .unwrap()
            .unwrap();
        i64::from_le_bytes(v[offset as usize..offset as usize + 8].try_into().unwrap())
    }

    /// Every (key bytes, value bytes) of array global `name`.
    pub fn array(&self, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let g = self.global(name);
        let m = self.obj.map(g.map).unwrap();
        m.keys()
            .unwrap()
            .into_iter()
            .map(|k| {
                let v = m.get(&k).unwrap().unwrap();
                (k, v)
            })
            .collect()
    }

    /// Per-CPU slots of statistic `name` at `key`, merged: (count, sum, min, max, buckets).
    /// The per-CPU slots of statistic `name` at `key`, one after another, as the map
    /// holds them.
    pub fn stat_slots(&self, name: &str, key: &[u8]) -> Vec<u8> {
        let g = self.global(name);
        let m = self.obj.map(g.map).unwrap();
        m.get_per_cpu(key).unwrap().unwrap().concat()
    }

    pub fn stat(&self, name: &str, key: &[u8]) -> (i64, i64, i64, i64, Vec<i64>) {
        let g = self.global(name);
        let m = self.obj.map(g.map).unwrap();
        let cpus = m.get_per_cpu(key).unwrap().unwrap();
        let words = |b: &[u8]| -> Vec<i64> {
            b.chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let (mut count, mut sum, mut min, mut max) = (0, 0, i64::MAX, i64::MIN);
        let mut buckets: Vec<i64> = Vec::new();
        for c in cpus {
            let w = words(&c);
            if buckets.is_empty() {
                buckets = vec![0; w.len() - 4];
            }
            if w[0] == 0 {
                continue;
            }
            count += w[0];
            sum += w[1];
            min = min.min(w[2]);
            max = max.max(w[3]);
            for (b, v) in buckets.iter_mut().zip(&w[4..]) {
                *b += v;
            }
        }
        (count, sum, min, max, buckets)
    }
}
