//! One multi-uprobe link per binary, whatever the script looks like. A compiled script
//! has one program per probe body (one per site for bodies that read their context),
//! each at its own sites with cookies unique across the script. Attached as they are,
//! each program would need its own link, and releasing a link costs an RCU grace
//! period (~46 ms here) in uninterruptible sleep: 1,000 probe statements took 46 s to
//! end. This pass plans the load instead:
//!
//! - Programs with the same instructions and map references are loaded once (10,000
//!   copies of `probe process("BIN").function("F") { c++ }` are one verifier run).
//! - When the sites of a binary all run one program, that program is attached at all
//!   of them through one link: nothing is added to a hit.
//! - Otherwise a dispatcher is attached at every site through one link. It reads the
//!   attach cookie, looks up the program that cookie belongs to in an array, and
//!   tail-calls it through a `BPF_MAP_TYPE_PROG_ARRAY`. The called program reads the
//!   same cookie (it is the link's, not the program's), so `pp()` and friends pick
//!   their site as before. The cost is a helper call, an inlined array lookup and the
//!   tail call: measured with `kernel.bpf_stats_enabled` on a counting probe, 62 ns
//!   of program time a hit attached directly, 107–131 ns dispatched, against a whole
//!   hit of 1.25–1.8 µs (a 2-core machine under load).
//!
//! User space fills the two maps after loading ([`Table`]): the array from cookie to
//! slot, and each slot with its program's file descriptor.

use std::collections::HashMap;

use bpf::script::{AttachSite, AttachSpec};
use bpf::{Asm, Cond, Helper, Insn, MapId, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg, Size};

/// How the programs of a compiled script reach the kernel.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to load: the script's distinct programs, then the dispatcher if there is
    /// one; its maps are the script's, then the dispatcher's two.
    pub object: ObjectSpec,
    /// For each program of `object`, the index in the compiled script of the program
    /// it is (its first copy), or `None` for the dispatcher.
    pub origin: Vec<Option<usize>>,
    /// For each program of the compiled script, the index in [`Plan::object`] it is
    /// loaded as (where a sampling program, which no attachment names, is).
    pub loaded_as: Vec<usize>,
    /// Where the programs of `object` go: one attachment per binary, or, when a
    /// cookie is shared between programs and cannot choose one, one per program.
    pub attachments: Vec<AttachSpec>,
    /// What user space writes into the dispatcher's maps, when there is one.
    pub table: Option<Table>,
}

/// The dispatcher's maps and what goes into them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// `u32` cookie → `u32` slot.
    pub cookies: MapId,
    /// Slot → program: a program array, filled with file descriptors.
    pub programs: MapId,
    /// (cookie, slot) of every site.
    pub entries: Vec<(u32, u32)>,
    /// For each slot, the index in [`Plan::object`] of the program it holds.
    pub slots: Vec<usize>,
}

/// The name of the dispatcher program, as `bpftool prog` shows it.
pub const DISPATCHER: &str = "gotap_dispatch";

/// Plans the load of `object`'s programs at `attachments`. With `dispatch` false (the
/// kernel has no multi-uprobe links, so every site is a link of its own anyway),
/// identical programs are still loaded once but no dispatcher is added.
pub fn plan(object: &ObjectSpec, attachments: &[AttachSpec], dispatch: bool) -> Plan {
    let (programs, origin, loaded_as) = distinct(&object.programs);
    let mut out = ObjectSpec {
        maps: object.maps.clone(),
        programs,
    };
    let mut origin: Vec<Option<usize>> = origin.into_iter().map(Some).collect();
    let sites = sites_by_binary(attachments, &loaded_as);
    let one_program = sites
        .iter()
        .all(|(_, s)| s.iter().all(|(p, _)| *p == s[0].0));
    if one_program {
        let attachments = sites
            .into_iter()
            .map(|(binary, s)| merged(attachments, binary, s[0].0, &s))
            .collect();
        return Plan {
            object: out,
            origin,
            loaded_as,
            attachments,
            table: None,
        };
    }
    let table = dispatch.then(|| table(&sites, &mut out)).flatten();
    let Some(table) = table else {
        // Each program at its own sites, through one link per binary and program.
        let mut per_program: Vec<AttachSpec> = Vec::new();
        for (binary, s) in &sites {
            let mut programs: Vec<usize> = s.iter().map(|(p, _)| *p).collect();
            programs.sort_unstable();
            programs.dedup();
            for p in programs {
                let mine: Vec<(usize, AttachSite)> =
                    s.iter().filter(|(q, _)| *q == p).copied().collect();
                per_program.push(merged(attachments, binary, p, &mine));
            }
        }
        return Plan {
            object: out,
            origin,
            loaded_as,
            attachments: per_program,
            table: None,
        };
    };
    let index = out.programs.len();
    out.programs.push(dispatcher(table.cookies, table.programs));
    origin.push(None);
    let attachments = sites
        .into_iter()
        .map(|(binary, s)| merged(attachments, binary, index, &s))
        .collect();
    Plan {
        object: out,
        origin,
        loaded_as,
        attachments,
        table: Some(table),
    }
}

/// The distinct programs of `programs`, which of them each first copy is, and for
/// every program of `programs` the index of its distinct copy.
fn distinct(programs: &[ProgramSpec]) -> (Vec<ProgramSpec>, Vec<usize>, Vec<usize>) {
    let mut kept: Vec<ProgramSpec> = Vec::new();
    let mut origin = Vec::new();
    let mut by_code: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    let mut loaded_as = Vec::with_capacity(programs.len());
    for (i, p) in programs.iter().enumerate() {
        let same = by_code.entry(Insn::encode_all(&p.insns)).or_default();
        let found = same.iter().copied().find(|&k| {
            let q = &kept[k];
            q.relocs == p.relocs && q.functions == p.functions && q.license == p.license
        });
        match found {
            Some(k) => loaded_as.push(k),
            None => {
                same.push(kept.len());
                loaded_as.push(kept.len());
                origin.push(i);
                kept.push(p.clone());
            }
        }
    }
    (kept, origin, loaded_as)
}

/// Every site of every attachment, by binary in order of first appearance, with the
/// distinct program it runs.
fn sites_by_binary<'a>(
    attachments: &'a [AttachSpec],
    loaded_as: &[usize],
) -> Vec<(&'a str, Vec<(usize, AttachSite)>)> {
    let mut out: Vec<(&str, Vec<(usize, AttachSite)>)> = Vec::new();
    for at in attachments {
        let Some(&program) = loaded_as.get(at.program) else {
            continue;
        };
        let i = match out.iter().position(|(b, _)| *b == at.binary) {
            Some(i) => i,
            None => {
                out.push((&at.binary, Vec::new()));
                out.len() - 1
            }
        };
        out[i].1.extend(at.sites.iter().map(|s| (program, *s)));
    }
    out.retain(|(_, s)| !s.is_empty());
    out
}

/// One attachment of `program` at `sites` of `binary`, named after the probe points
/// of the script's attachments it stands for.
fn merged(
    attachments: &[AttachSpec],
    binary: &str,
    program: usize,
    sites: &[(usize, AttachSite)],
) -> AttachSpec {
    let mut points: Vec<&str> = Vec::new();
    for at in attachments.iter().filter(|a| a.binary == binary) {
        if !points.contains(&at.probe.as_str()) {
            points.push(&at.probe);
        }
    }
    let probe = match points.as_slice() {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} and {} more probe points", rest.len()),
        [] => format!("process(\"{binary}\")"),
    };
    AttachSpec {
        program,
        binary: binary.to_string(),
        probe,
        sites: sites.iter().map(|(_, s)| *s).collect(),
    }
}

/// The dispatcher's maps, added to `object`, and what user space writes into them;
/// `None` if a cookie is shared by two programs or does not fit 32 bits, when no
/// table can choose.
fn table(sites: &[(&str, Vec<(usize, AttachSite)>)], object: &mut ObjectSpec) -> Option<Table> {
    let mut slot_of: HashMap<usize, u32> = HashMap::new();
    let mut slots = Vec::new();
    let mut program_of: HashMap<u32, usize> = HashMap::new();
    let mut entries = Vec::new();
    for (program, site) in sites.iter().flat_map(|(_, s)| s.iter()) {
        let cookie = u32::try_from(site.cookie).ok()?;
        match program_of.insert(cookie, *program) {
            Some(p) if p != *program => return None,
            Some(_) => continue,
            None => {}
        }
        let slot = *slot_of.entry(*program).or_insert_with(|| {
            slots.push(*program);
            slots.len() as u32 - 1
        });
        entries.push((cookie, slot));
    }
    let highest = entries.iter().map(|(c, _)| *c).max().unwrap_or(0);
    // Codegen numbers cookies from 0, so an array (whose lookup the verifier
    // inlines) fits; a sparse numbering gets a hash map.
    let dense = u64::from(highest) < 2 * entries.len() as u64 + 1024;
    let cookies = object.add_map(MapSpec {
        name: "gotap_cookies".into(),
        kind: if dense { MapKind::Array } else { MapKind::Hash },
        key_size: 4,
        value_size: 4,
        max_entries: if dense {
            highest + 1
        } else {
            entries.len() as u32
        },
        flags: 0,
    });
    let programs = object.add_map(MapSpec {
        name: "gotap_programs".into(),
        kind: MapKind::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: slots.len() as u32,
        flags: 0,
    });
    Some(Table {
        cookies,
        programs,
        entries,
        slots,
    })
}

/// `tail_call(ctx, programs, cookies[get_attach_cookie(ctx)])`; a cookie with no
/// slot, or an empty slot, returns 0 having run nothing.
fn dispatcher(cookies: MapId, programs: MapId) -> ProgramSpec {
    let mut a = Asm::new();
    let out = a.label();
    a.emit(Insn::mov64(Reg::R6, Reg::R1));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::stx(Size::W, Reg::R10, -4, Reg::R0));
    a.ld_map(Reg::R1, cookies);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(bpf::AluOp::Add, Reg::R2, -4));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::ldx(Size::W, Reg::R3, Reg::R0, 0));
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.ld_map(Reg::R2, programs);
    a.call(Helper::TailCall);
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    let program = a
        .finish()
        .expect("the dispatcher's jumps are bound and near");
    ProgramSpec::new(DISPATCHER, program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, value: i32) -> ProgramSpec {
        let mut a = Asm::new();
        a.emit(Insn::mov64(Reg::R0, value)).exit();
        ProgramSpec::new(name, a.finish().unwrap())
    }

    fn attach(program: usize, binary: &str, probe: &str, sites: &[(u64, u64)]) -> AttachSpec {
        AttachSpec {
            program,
            binary: binary.into(),
            probe: probe.into(),
            sites: sites
                .iter()
                .map(|&(off, cookie)| AttachSite {
                    addr: off,
                    file_offset: off,
                    cookie,
                })
                .collect(),
        }
    }

    fn object(programs: Vec<ProgramSpec>) -> ObjectSpec {
        ObjectSpec {
            maps: Vec::new(),
            programs,
        }
    }

    #[test]
    fn copies_of_one_program_are_loaded_once_and_attached_through_one_link() {
        let n = 10_000;
        let obj = object((0..n).map(|i| program(&format!("gotap_p{i}"), 0)).collect());
        let ats: Vec<AttachSpec> = (0..n)
            .map(|i| attach(i, "/bin/x", "p", &[(0x40, i as u64)]))
            .collect();
        let plan = plan(&obj, &ats, true);
        assert_eq!(plan.object.programs.len(), 1);
        assert_eq!(plan.object.programs[0].name, "gotap_p0");
        assert_eq!(plan.origin, [Some(0)]);
        assert!(plan.table.is_none());
        assert_eq!(plan.attachments.len(), 1);
        let at = &plan.attachments[0];
        assert_eq!((at.program, at.sites.len()), (0, n));
        assert!(
            at.sites
                .iter()
                .enumerate()
                .all(|(i, s)| s.cookie == i as u64)
        );
    }

    #[test]
    fn different_programs_share_one_link_through_the_dispatcher() {
        let obj = object(vec![program("a", 0), program("b", 1), program("a2", 0)]);
        let ats = vec![
            attach(0, "/bin/x", "pa", &[(0x10, 0), (0x20, 1)]),
            attach(1, "/bin/x", "pb", &[(0x10, 2)]),
            attach(2, "/bin/x", "pa2", &[(0x30, 3)]),
        ];
        let plan = plan(&obj, &ats, true);
        let names: Vec<&str> = plan
            .object
            .programs
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", DISPATCHER]);
        assert_eq!(plan.origin, [Some(0), Some(1), None]);
        let t = plan.table.as_ref().expect("a dispatcher");
        assert_eq!(t.entries, [(0, 0), (1, 0), (2, 1), (3, 0)]);
        assert_eq!(t.slots, [0, 1]);
        assert_eq!(plan.object.maps[t.cookies.0 as usize].kind, MapKind::Array);
        assert_eq!(plan.object.maps[t.cookies.0 as usize].max_entries, 4);
        assert_eq!(
            plan.object.maps[t.programs.0 as usize].kind,
            MapKind::ProgArray
        );
        assert_eq!(plan.attachments.len(), 1);
        let at = &plan.attachments[0];
        assert_eq!(at.program, 2);
        assert_eq!(at.sites.len(), 4);
        assert_eq!(at.probe, "pa and 2 more probe points");
    }

    #[test]
    fn without_multi_links_or_with_a_shared_cookie_each_program_keeps_its_sites() {
        let obj = object(vec![program("a", 0), program("b", 1)]);
        let ats = vec![
            attach(0, "/bin/x", "pa", &[(0x10, 0)]),
            attach(1, "/bin/x", "pb", &[(0x20, 1)]),
        ];
        let p = plan(&obj, &ats, false);
        assert!(p.table.is_none());
        assert_eq!(p.attachments.len(), 2);
        let shared = vec![
            attach(0, "/bin/x", "pa", &[(0x10, 7)]),
            attach(1, "/bin/x", "pb", &[(0x20, 7)]),
        ];
        let p = plan(&obj, &shared, true);
        assert!(p.table.is_none());
        assert_eq!(p.object.programs.len(), 2);
        assert_eq!(p.attachments.len(), 2);
    }

    #[test]
    fn sparse_cookies_get_a_hash_map() {
        let obj = object(vec![program("a", 0), program("b", 1)]);
        let ats = vec![
            attach(0, "/bin/x", "pa", &[(0x10, 5_000_000)]),
            attach(1, "/bin/x", "pb", &[(0x20, 1)]),
        ];
        let p = plan(&obj, &ats, true);
        let t = p.table.expect("a dispatcher");
        assert_eq!(p.object.maps[t.cookies.0 as usize].kind, MapKind::Hash);
    }
}
