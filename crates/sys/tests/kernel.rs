//! Real kernel, real Go program: load small programs, attach them as uprobes to
//! `tests/testprogs/counts.go` and check the counts it documents (`main.leaf` runs
//! ROUNDS × 1000 times, `main.(*T).Method` ROUNDS × 10). Needs root.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bpf::{Asm, Cond, Helper, Insn, MapId, MapKind, MapSpec, ProgramSpec, Reg, Size};
use object::{Object, ObjectSegment, ObjectSymbol};
use sys::{
    AttachKind, Error, LoadOptions, LoadedProgram, Map, RingBuf, Scope, UpdateFlags, Uprobe,
    UprobeMulti,
};

/// A private copy of the counts program. Uprobes belong to a file (its inode), and
/// a probe for all processes would also count the runs of other tests, here or in
/// other crates, that use the shared cached build; each test's copy is its own file.
fn counts() -> TempExe {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let built = testprogs::build("counts", &testprogs::newest(), testprogs::Variant::Default);
    let dir = built
        .parent()
        .unwrap()
        .join(format!("sys-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(format!("counts-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::copy(&built, &copy).unwrap();
    TempExe(copy)
}

/// A copied executable, removed when the test ends.
struct TempExe(PathBuf);

impl std::ops::Deref for TempExe {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempExe {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempExe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The file offset of `symbol`'s first instruction, through the PT_LOAD segment that
/// holds its address (done here with `object`, independently of gobin).
fn file_offset(exe: &Path, symbol: &str) -> u64 {
    let data = std::fs::read(exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("no symbol {symbol}"));
    let addr = sym.address();
    for seg in file.segments() {
        let (off, size) = seg.file_range();
        if addr >= seg.address() && addr < seg.address() + size {
            return addr - seg.address() + off;
        }
    }
    panic!("{symbol} at {addr:#x} is in no PT_LOAD segment");
}

/// Runs `counts ROUNDS` and checks it finished as it says it does.
fn run_counts(exe: &Path, rounds: u32) {
    let out = Command::new(exe).arg(rounds.to_string()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with(&format!("done {}\n", rounds * 10)), "{text}");
}

fn array(name: &str, entries: u32) -> Map {
    Map::create(&MapSpec {
        name: name.into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 8,
        max_entries: entries,
        flags: 0,
    })
    .unwrap()
}

fn read_u64(map: &Map, key: u32) -> u64 {
    let v = map.get(&key.to_ne_bytes()).unwrap().unwrap();
    u64::from_ne_bytes(v[..8].try_into().unwrap())
}

/// `counts[key]++` where key is the attach cookie (0 without one).
/// R0 = the element of `map` whose u32 key is at fp-4; on to `out` if there is none.
fn lookup_or_skip(a: &mut Asm, map: MapId, out: bpf::Label) {
    a.ld_map(Reg::R1, map);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R2, -4));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
}

fn counter_program(map: MapId) -> ProgramSpec {
    let mut a = Asm::new();
    let out = a.label();
    // R1 holds the context; get_attach_cookie wants it.
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::stx(Size::W, Reg::R10, -4, Reg::R0));
    lookup_or_skip(&mut a, map, out);
    a.emit(Insn::mov64(Reg::R1, 1));
    a.emit(Insn::atomic_add(Size::DW, Reg::R0, 0, Reg::R1).unwrap());
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    ProgramSpec::new("gotap_count", a.finish().unwrap())
}

#[test]
fn perf_event_uprobe_counts_every_call_of_main_leaf() {
    let exe = counts();
    let maps = vec![array("counts", 2)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let probe = Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    assert!(probe.is_link(), "Linux 6.18 links perf events");
    run_counts(&exe, 3);
    assert_eq!(read_u64(&maps[0], 0), 3000);
}

#[test]
fn bpf_to_bpf_calls_run_in_the_kernel() {
    let exe = counts();
    let maps = vec![array("counts", 1)];
    // counts[0] += add2(5) at each call of main.leaf, where add2(x) = x + 2.
    let mut a = Asm::new();
    let out = a.label();
    let add2 = a.label();
    a.emit(Insn::st(Size::W, Reg::R10, -4, 0));
    lookup_or_skip(&mut a, MapId(0), out);
    a.emit(Insn::mov64(Reg::R6, Reg::R0));
    a.emit(Insn::mov64(Reg::R1, 5));
    a.call_fn(add2);
    a.emit(Insn::atomic_add(Size::DW, Reg::R6, 0, Reg::R0).unwrap());
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    a.bind(add2);
    a.emit(Insn::mov64(Reg::R0, Reg::R1));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R0, 2)).exit();
    let spec = ProgramSpec::new("gotap_calls", a.finish().unwrap());
    let prog = LoadedProgram::load(&spec, &maps, LoadOptions::default()).unwrap();
    let _probe =
        Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    run_counts(&exe, 1);
    assert_eq!(read_u64(&maps[0], 0), 7000);
}

#[test]
fn a_helper_calls_back_a_bpf_function() {
    let exe = counts();
    let maps = vec![array("sum", 1)];
    // sum[0] += 1 + 2 + … + 10 at each call of main.leaf, the adding done by a
    // function bpf_loop calls back with (index, ctx), ctx a u64 on the caller's stack.
    let mut a = Asm::new();
    let out = a.label();
    let add = a.label();
    a.emit(Insn::st(Size::DW, Reg::R10, -16, 0));
    a.emit(Insn::mov64(Reg::R1, 10));
    a.ld_fn(Reg::R2, add);
    a.emit(Insn::mov64(Reg::R3, Reg::R10));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R3, -16));
    a.emit(Insn::mov64(Reg::R4, 0));
    a.call(Helper::Loop);
    a.emit(Insn::ldx(Size::DW, Reg::R6, Reg::R10, -16));
    a.emit(Insn::st(Size::W, Reg::R10, -4, 0));
    lookup_or_skip(&mut a, MapId(0), out);
    a.emit(Insn::atomic_add(Size::DW, Reg::R0, 0, Reg::R6).unwrap());
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    // add(index, ctx): *ctx += index + 1; go on.
    a.bind(add);
    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R2, 0));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R3, Reg::R1));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R3, 1));
    a.emit(Insn::stx(Size::DW, Reg::R2, 0, Reg::R3));
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    let spec = ProgramSpec::new("gotap_loop", a.finish().unwrap());
    assert_eq!(spec.functions.len(), 1);
    let prog = LoadedProgram::load(&spec, &maps, LoadOptions::default()).unwrap();
    let _probe =
        Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    run_counts(&exe, 1);
    // One round is 1000 calls of leaf.
    assert_eq!(read_u64(&maps[0], 0), 1000 * 55);
}

#[test]
fn the_context_holds_go_register_arguments() {
    let exe = counts();
    let maps = vec![array("sum", 1)];
    // sum[0] += i at each call of main.leaf(i int); Go passes i in RAX.
    let mut a = Asm::new();
    let out = a.label();
    a.emit(Insn::ldx(
        Size::DW,
        Reg::R6,
        Reg::R1,
        bpf::X86Reg::GO_INT_ARGS[0].offset(),
    ));
    a.emit(Insn::st(Size::W, Reg::R10, -4, 0));
    lookup_or_skip(&mut a, MapId(0), out);
    a.emit(Insn::atomic_add(Size::DW, Reg::R0, 0, Reg::R6).unwrap());
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    let spec = ProgramSpec::new("gotap_args", a.finish().unwrap());
    let prog = LoadedProgram::load(&spec, &maps, LoadOptions::default()).unwrap();
    let _probe =
        Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    run_counts(&exe, 2);
    // Each round calls leaf(0) .. leaf(999).
    assert_eq!(read_u64(&maps[0], 0), 2 * (0..1000).sum::<u64>());
}

#[test]
fn perf_event_uprobes_carry_their_cookies() {
    let exe = counts();
    let maps = vec![array("counts", 2)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let _leaf = Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    let _method = Uprobe::attach(
        &prog,
        &exe,
        file_offset(&exe, "main.(*T).Method"),
        Scope::All,
        1,
    )
    .unwrap();
    run_counts(&exe, 2);
    assert_eq!((read_u64(&maps[0], 0), read_u64(&maps[0], 1)), (2000, 20));
}

#[test]
fn perf_event_uprobe_for_one_pid_ignores_other_processes() {
    let exe = counts();
    let maps = vec![array("counts", 2)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    // A process that pauses between rounds; the probe is placed once it has said
    // "round 1", so it sees exactly the last three rounds.
    let mut child = Command::new(&exe)
        .args(["4", "300"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "round 1\n");
    let off = file_offset(&exe, "main.leaf");
    let probe = Uprobe::attach(&prog, &exe, off, Scope::Pid(child.id()), 0).unwrap();
    // Another run of the same file, not traced.
    run_counts(&exe, 2);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    drop(probe);
    assert!(rest.ends_with("done 40\n"), "{rest}");
    assert_eq!(read_u64(&maps[0], 0), 3000);
}

#[test]
fn multi_uprobe_link_tells_functions_apart_by_cookie() {
    assert!(
        sys::uprobe_multi_supported(),
        "Linux 6.6+ has multi-uprobe links"
    );
    let exe = counts();
    let maps = vec![array("counts", 2)];
    let opts = LoadOptions {
        attach: AttachKind::UprobeMulti,
        verbose_log: false,
    };
    let prog = LoadedProgram::load(&counter_program(MapId(0)), &maps, opts).unwrap();
    let offsets = [
        file_offset(&exe, "main.leaf"),
        file_offset(&exe, "main.(*T).Method"),
    ];
    let link = UprobeMulti::attach(&prog, &exe, &offsets, &[0, 1], Scope::All).unwrap();
    assert_eq!(link.len(), 2);
    run_counts(&exe, 3);
    assert_eq!((read_u64(&maps[0], 0), read_u64(&maps[0], 1)), (3000, 30));
}

#[test]
fn probes_vanish_when_their_descriptors_close() {
    let exe = counts();
    let maps = vec![array("counts", 2)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let probe = Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    run_counts(&exe, 1);
    assert_eq!(read_u64(&maps[0], 0), 1000);
    drop(probe);
    // The target still runs right, and nothing counts it any more.
    run_counts(&exe, 2);
    assert_eq!(read_u64(&maps[0], 0), 1000);

    let opts = LoadOptions {
        attach: AttachKind::UprobeMulti,
        verbose_log: false,
    };
    let multi = LoadedProgram::load(&counter_program(MapId(0)), &maps, opts).unwrap();
    let link = UprobeMulti::attach(
        &multi,
        &exe,
        &[file_offset(&exe, "main.leaf")],
        &[1],
        Scope::All,
    )
    .unwrap();
    run_counts(&exe, 1);
    drop(link);
    run_counts(&exe, 1);
    assert_eq!(read_u64(&maps[0], 1), 1000);
}

#[test]
fn ring_buffer_delivers_every_record_across_wraparound() {
    let exe = counts();
    let ring = Map::create(&MapSpec {
        name: "events".into(),
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: 64 * 1024,
        flags: 0,
    })
    .unwrap();
    // Each call of main.leaf sends (tgid << 32 | pid, sequence number from a map).
    let maps = vec![ring, array("seq", 1)];
    let mut a = Asm::new();
    let out = a.label();
    a.call(Helper::GetCurrentPidTgid);
    a.emit(Insn::stx(Size::DW, Reg::R10, -16, Reg::R0));
    a.emit(Insn::st(Size::W, Reg::R10, -20, 0));
    a.ld_map(Reg::R1, MapId(1));
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R2, -20));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::mov64(Reg::R1, 1));
    a.emit(Insn::atomic_fetch_add(Size::DW, Reg::R0, 0, Reg::R1).unwrap());
    a.emit(Insn::stx(Size::DW, Reg::R10, -8, Reg::R1));
    a.ld_map(Reg::R1, MapId(0));
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R2, -16));
    a.emit(Insn::mov64(Reg::R3, 16));
    a.emit(Insn::mov64(Reg::R4, 0));
    a.call(Helper::RingbufOutput);
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    let spec = ProgramSpec::new("gotap_events", a.finish().unwrap());
    let prog = LoadedProgram::load(&spec, &maps, LoadOptions::default()).unwrap();
    let _probe =
        Uprobe::attach(&prog, &exe, file_offset(&exe, "main.leaf"), Scope::All, 0).unwrap();
    let mut rb = RingBuf::new(&maps[0]).unwrap();

    // 5 rounds of 1000 records of 24 bytes (header included) is 120000 bytes: the
    // 64 KiB buffer wraps. The pauses between rounds let the reader keep up.
    let mut child = Command::new(&exe)
        .args(["5", "150"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = false;
    loop {
        rb.poll(Duration::from_millis(20), |rec| {
            assert_eq!(rec.len(), 16);
            let tgid = u64::from_ne_bytes(rec[..8].try_into().unwrap()) >> 32;
            assert_eq!(tgid, u64::from(pid));
            seqs.push(u64::from_ne_bytes(rec[8..].try_into().unwrap()));
        })
        .unwrap();
        if exited && rb.pending() == 0 {
            break;
        }
        exited = exited || child.try_wait().unwrap().is_some();
        assert!(
            Instant::now() < deadline,
            "timed out with {} records",
            seqs.len()
        );
    }
    assert_eq!(seqs.len(), 5000);
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
        "records in order, none lost"
    );
}

#[test]
fn a_probe_on_a_missing_file_says_where() {
    let maps = vec![array("counts", 1)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let e = Uprobe::attach(
        &prog,
        Path::new("/nonexistent/gotap-target"),
        0x10,
        Scope::All,
        0,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Attach { offset: 0x10, .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot place a uprobe at /nonexistent/gotap-target+0x10"),
        "{e}"
    );
}

#[test]
fn the_verifier_log_explains_a_rejected_program() {
    // Returns without setting R0.
    let mut a = Asm::new();
    a.exit();
    let spec = ProgramSpec::new("bad", a.finish().unwrap());
    let e = LoadedProgram::load(&spec, &[], LoadOptions::default()).unwrap_err();
    let Error::Verifier(v) = e else {
        panic!("{e:?}")
    };
    assert!(v.log.contains("R0 !read_ok"), "{}", v.log);
    assert_eq!(v.name, "bad");

    // Asked for, a full log comes with a program that loads.
    let mut a = Asm::new();
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    let spec = ProgramSpec::new("good", a.finish().unwrap());
    let p = LoadedProgram::load(
        &spec,
        &[],
        LoadOptions {
            attach: AttachKind::PerfEvent,
            verbose_log: true,
        },
    )
    .unwrap();
    let log = p.verifier_log().unwrap();
    assert!(log.contains("processed 2 insns"), "{log}");
}

/// A mappable array: what a program (here, the kernel's own update path) stores is
/// read in place, and a compare-and-exchange in user space takes effect only where
/// the word holds what it expects, as the map's lookups then show.
#[test]
fn a_mapped_array_reads_and_exchanges_the_maps_own_words() {
    let spec = MapSpec {
        name: "shared".into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 16,
        max_entries: 300,
        flags: bpf::MAP_F_MMAPABLE,
    };
    let m = Map::create(&spec).unwrap();
    let value = |a: u64, b: u64| [a.to_ne_bytes(), b.to_ne_bytes()].concat();
    m.update(&299u32.to_ne_bytes(), &value(7, 8), UpdateFlags::Any)
        .unwrap();
    let shared = sys::Shared::of(&m).unwrap();
    assert_eq!(shared.len(), 300);
    assert_eq!((shared.load(299, 0), shared.load(299, 1)), (7, 8));
    assert_eq!(shared.load(300, 0), 0);
    assert!(!shared.compare_exchange(299, 0, 6, 1));
    assert!(shared.compare_exchange(299, 0, 7, 1));
    assert_eq!(m.get(&299u32.to_ne_bytes()).unwrap(), Some(value(1, 8)));
    let plain = Map::create(&MapSpec { flags: 0, ..spec }).unwrap();
    assert!(sys::Shared::of(&plain).is_err());
}

#[test]
fn hash_and_per_cpu_maps_store_look_up_iterate_and_delete() {
    let spec = MapSpec {
        name: "h".into(),
        kind: MapKind::Hash,
        key_size: 8,
        value_size: 4,
        max_entries: 16,
        flags: 0,
    };
    let h = Map::create(&spec).unwrap();
    for k in 1u64..=5 {
        h.update(
            &k.to_ne_bytes(),
            &(k as u32 * 10).to_ne_bytes(),
            UpdateFlags::Any,
        )
        .unwrap();
    }
    assert_eq!(
        h.get(&3u64.to_ne_bytes()).unwrap(),
        Some(30u32.to_ne_bytes().to_vec())
    );
    assert!(
        h.update(&3u64.to_ne_bytes(), &[0; 4], UpdateFlags::NoExist)
            .is_err()
    );
    let mut keys: Vec<u64> = h
        .keys()
        .unwrap()
        .iter()
        .map(|k| u64::from_ne_bytes(k[..].try_into().unwrap()))
        .collect();
    keys.sort();
    assert_eq!(keys, vec![1, 2, 3, 4, 5]);
    assert!(h.delete(&3u64.to_ne_bytes()).unwrap());
    assert!(!h.delete(&3u64.to_ne_bytes()).unwrap());
    assert_eq!(h.get(&3u64.to_ne_bytes()).unwrap(), None);

    let pc = Map::create(&MapSpec {
        name: "pc".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        flags: 0,
    })
    .unwrap();
    let n = sys::possible_cpus().unwrap();
    let mut buf = vec![0u8; pc.value_buf_size()];
    assert_eq!(buf.len(), 8 * n);
    for cpu in 0..n {
        buf[8 * cpu..8 * cpu + 4].copy_from_slice(&(cpu as u32 + 100).to_ne_bytes());
    }
    pc.update(&0u32.to_ne_bytes(), &buf, UpdateFlags::Any)
        .unwrap();
    let vals = pc.get_per_cpu(&0u32.to_ne_bytes()).unwrap().unwrap();
    let want: Vec<Vec<u8>> = (0..n)
        .map(|c| (c as u32 + 100).to_ne_bytes().to_vec())
        .collect();
    assert_eq!(vals, want);
}

/// What an entry probe sees on a function whose goroutine stack grows: Go's
/// prologue calls morestack, which copies the stack and restarts the function from
/// its first instruction, so the probe fires again. Printed, for codegen.
#[test]
#[ignore = "measurement, prints figures"]
fn measure_entry_probe_on_a_growing_stack() {
    let exe = counts();
    let maps = vec![array("counts", 1)];
    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let _p = Uprobe::attach(
        &prog,
        &exe,
        file_offset(&exe, "main.recurse"),
        Scope::All,
        0,
    )
    .unwrap();
    run_counts(&exe, 3);
    println!(
        "main.recurse entry probe: {} hits for 3 × 8 × 200 = 4800 calls",
        read_u64(&maps[0], 0)
    );
}

/// Attach and detach cost, printed: `cargo test -p sys --test kernel -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, prints figures"]
fn measure_attaching_1000_probes() {
    let exe = counts();
    let data = std::fs::read(&*exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let (lo, hi) = (
        object::ObjectSection::address(&text),
        object::ObjectSection::address(&text) + object::ObjectSection::size(&text),
    );
    let mut offsets: Vec<u64> = Vec::new();
    for s in file.symbols() {
        if s.kind() == object::SymbolKind::Text && s.address() >= lo && s.address() < hi {
            let name = s.name().unwrap_or("");
            offsets.push(file_offset_of(&file, s.address()));
            let _ = name;
        }
    }
    offsets.sort();
    offsets.dedup();
    offsets.truncate(1000);
    assert_eq!(offsets.len(), 1000);
    let maps = vec![array("counts", 2)];

    let prog =
        LoadedProgram::load(&counter_program(MapId(0)), &maps, LoadOptions::default()).unwrap();
    let t = Instant::now();
    let probes: Vec<Uprobe> = offsets
        .iter()
        .map(|o| Uprobe::attach(&prog, &exe, *o, Scope::All, 0).unwrap())
        .collect();
    let attach = t.elapsed();
    let t = Instant::now();
    drop(probes);
    let detach = t.elapsed();
    println!("1000 perf-event uprobes: attach {attach:?}, detach {detach:?}");

    let opts = LoadOptions {
        attach: AttachKind::UprobeMulti,
        verbose_log: false,
    };
    let prog = LoadedProgram::load(&counter_program(MapId(0)), &maps, opts).unwrap();
    let t = Instant::now();
    let link = UprobeMulti::attach(&prog, &exe, &offsets, &[], Scope::All).unwrap();
    let attach = t.elapsed();
    let t = Instant::now();
    drop(link);
    let detach = t.elapsed();
    println!("one multi-uprobe link of 1000: attach {attach:?}, detach {detach:?}");
}

fn file_offset_of(file: &object::File<'_>, addr: u64) -> u64 {
    file.segments()
        .find_map(|seg| {
            let (off, size) = seg.file_range();
            (addr >= seg.address() && addr < seg.address() + size)
                .then(|| addr - seg.address() + off)
        })
        .unwrap()
}
