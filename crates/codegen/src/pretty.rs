//! Pretty-printed Go values (`$x$`, `$x$$`, `$$vars`): planned here once per
//! expression as a [`Shape`] (see `bpf::govalue`), then emitted as the straight line
//! of reads that fills a record's field; user space prints the field as Go's `%+v`
//! would (`runtime::govalue`).
//!
//! The plan follows `fmt`'s rules where they decide what to read: the value itself,
//! the bytes of its strings, the elements of its slices and arrays, the first
//! buckets or groups of its maps (every slot's key and value), its interfaces'
//! dynamic types and values, and the target of a pointer at the top (`$x$`, where
//! Go prints `&{…}`) or at any depth (`$x$$`). Three limits of `lang::Limits` bound
//! it: a nesting depth, the fields or elements of one value, and the target bytes
//! of the whole value (struct fields are read with their struct, so that bounds
//! them); whatever they leave out is planned as a cut (printed `…`), and at most
//! [`MAX_NODES`] nodes are planned for any type.
//! Every region the plan reads costs target bytes, so a recursive type (a list, a
//! tree) costs no more than the budget however deep it goes, and so do the program
//! and the time to plan it.

use bpf::govalue::{
    Addr, Guard, IfaceNode, KeyOrder, Len, MapLayout, MapNode, MapSlot, Node, NodeKind, Region,
    STATUS_CUT, STATUS_FAULT, STATUS_READ, Shape, TimeNode,
};
use bpf::{AluOp, Cond, Helper, Insn, Reg, Size, X86Reg};
use gobin::layout::{MAP_HEADER, MapImpl};
use gobin::rtype::{KIND_MASK, KIND_STRING, RTYPE_KIND, RTYPE_LEN, RTYPE_STR};
use lang::Limits;
use lang::ast::{Expr, ExprKind, Pretty, TargetBase};

use crate::target::GoTarget;
use crate::types::{DKind, Desc};

/// How deep `fmt`'s rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `$x$`: as `%+v`: a pointer's target at the top only.
    Shallow,
    /// `$x$$`: pointers followed at every depth.
    Deep,
    /// `$$vars`: each variable as stap prints it (numbers and pointers in hex).
    Vars,
    /// `$$vars$`, `$$vars$$`: each variable as `$v$$` prints it.
    DeepVars,
}

/// The most nodes one value plans: a bound on the compile for types with many
/// fields of no size.
const MAX_NODES: u32 = 4096;
/// Bytes of an interface's dynamic value read at its data word.
const WINDOW: u64 = 64;
/// Bytes of a runtime type's name read.
const NAME: u64 = 48;
/// Dynamic types of an `any` planned in full.
const MAX_CANDIDATES: usize = 16;

/// Where a value's bytes are while planning: the field offset of its first byte, the
/// status slot of the region they are in, and how many of its bytes that region
/// holds from there.
#[derive(Clone, Copy)]
struct Place {
    at: u32,
    status: u32,
    avail: u64,
}

/// What the nodes below inherit.
#[derive(Clone)]
struct Ctx {
    /// Go's depth 0: a pointer to a struct prints as `&{…}`.
    top: bool,
    /// `fmt` would call the value's `String`/`Error` (an exported path).
    methods: bool,
    /// Conditions every region below must meet (a full map slot, a dynamic type).
    guards: Vec<Guard>,
    depth: u32,
    /// The most bytes of one string read.
    string_max: u32,
    /// Elements of one collection planned: the limit at the top, a quarter of
    /// it for each element's own collections (a map of slices), at least 2.
    items: u32,
}

impl Ctx {
    fn below(&self) -> Ctx {
        Ctx {
            top: false,
            depth: self.depth + 1,
            ..self.clone()
        }
    }

    fn field(&self, exported: bool) -> Ctx {
        Ctx {
            methods: self.methods && exported,
            ..self.below()
        }
    }

    /// For the elements of a collection.
    fn element(&self) -> Ctx {
        Ctx {
            items: (self.items / 4).max(2),
            ..self.below()
        }
    }

    fn guarded(&self, g: Guard) -> Ctx {
        let mut c = self.clone();
        c.guards.push(g);
        c
    }
}

/// Plans the value of `roots` (one expression, or every variable of `$$vars`),
/// each a name and a type handle.
pub fn plan(target: &GoTarget<'_>, limits: &Limits, mode: Mode, roots: &[(String, u64)]) -> Shape {
    let v = target.binary().go_version();
    let experiments = target.binary().build_info().setting("GOEXPERIMENT");
    let mut p = Planner {
        target,
        limits: *limits,
        mode,
        shape: Shape::default(),
        next: 8,
        // A quarter of the budget is the heap of string bytes (see `bpf::govalue`).
        bytes_left: u64::from(limits.pretty_bytes - heap_of(limits)),
        nodes_left: MAX_NODES,
        maps: MapImpl::of(v.major, v.minor, experiments),
        statuses: 1,
        queue: Default::default(),
    };
    let mut vars = Vec::new();
    for (i, (name, h)) in roots.iter().enumerate() {
        let size = target.type_desc(*h).map_or(0, |d| d.size);
        let max = size.min(p.bytes_left) as u32;
        let r = p.region(max, Addr::Root { index: i as u32 }, Len::Max, None, &[]);
        let ctx = Ctx {
            top: mode != Mode::Vars,
            methods: true,
            guards: Vec::new(),
            depth: 1,
            string_max: limits.string_bytes() as u32,
            items: limits.pretty_items,
        };
        let at = p.shape.regions[r as usize].at;
        let status = p.shape.regions[r as usize].status;
        let n = p.value(
            *h,
            Place {
                at,
                status,
                avail: u64::from(max),
            },
            &ctx,
        );
        vars.push((name.clone(), n));
    }
    p.run();
    p.shape.root = match mode {
        Mode::Vars | Mode::DeepVars => p.node(0, 0, NodeKind::Vars(vars)),
        _ => vars.first().map_or(0, |(_, n)| *n),
    };
    // The heap is followed by one string's worth of slack, so no read can pass
    // the field.
    let heap = heap_of(limits);
    p.shape.cursor_at = p.alloc(8);
    p.shape.faults_at = p.alloc(8);
    p.shape.heap_at = p.next;
    p.shape.heap = heap;
    if heap > 0 {
        p.next += heap + limits.string_bytes().next_multiple_of(8) as u32;
    }
    p.shape.status_at = p.next;
    p.shape.statuses = p.statuses;
    p.shape.len = (p.next + p.statuses).div_ceil(8) * 8;
    p.shape
}

struct Planner<'t, 'd> {
    target: &'t GoTarget<'d>,
    limits: Limits,
    mode: Mode,
    shape: Shape,
    /// The next free byte of the field.
    next: u32,
    bytes_left: u64,
    nodes_left: u32,
    maps: MapImpl,
    /// Status slots handed out (slot 0 is the field itself, always read).
    statuses: u32,
    /// Nodes waiting to be planned.
    queue: std::collections::VecDeque<(u32, u64, Place, Ctx)>,
}

impl Planner<'_, '_> {
    fn alloc(&mut self, n: u32) -> u32 {
        let at = self.next;
        self.next += n.div_ceil(8) * 8;
        at
    }

    /// A new region of at most `max` bytes (taken from the budget); its index.
    fn region(
        &mut self,
        max: u32,
        addr: Addr,
        len: Len,
        after: Option<u32>,
        guards: &[Guard],
    ) -> u32 {
        self.bytes_left = self.bytes_left.saturating_sub(u64::from(max));
        let at = self.alloc(max);
        let status = self.statuses;
        self.statuses += 1;
        let count_at = match len {
            Len::Max => None,
            _ => Some(self.alloc(8)),
        };
        self.shape.regions.push(Region {
            at,
            max,
            status,
            count_at,
            addr,
            len,
            after,
            guards: guards.to_vec(),
            heap: false,
        });
        (self.shape.regions.len() - 1) as u32
    }

    fn reg(&self, r: u32) -> &Region {
        &self.shape.regions[r as usize]
    }

    fn node(&mut self, at: u32, status: u32, kind: NodeKind) -> u32 {
        self.shape.nodes.push(Node { at, status, kind });
        (self.shape.nodes.len() - 1) as u32
    }

    fn desc(&self, h: u64) -> Option<std::sync::Arc<Desc>> {
        self.target.type_desc(h).ok()
    }

    /// A node for the value of type `h` at `p`, planned after every node already
    /// waiting: breadth first, so the budget goes to what is printed first and
    /// nearest the top.
    fn value(&mut self, h: u64, p: Place, ctx: &Ctx) -> u32 {
        if self.nodes_left == 0 {
            return self.node(p.at, p.status, NodeKind::Cut);
        }
        self.nodes_left -= 1;
        let id = self.node(p.at, p.status, NodeKind::Cut);
        self.queue.push_back((id, h, p, ctx.clone()));
        id
    }

    /// Plans the waiting nodes.
    fn run(&mut self) {
        while let Some((id, h, p, ctx)) = self.queue.pop_front() {
            let kind = self.kind(h, p, &ctx);
            self.shape.nodes[id as usize].kind = kind;
        }
    }

    fn kind(&mut self, h: u64, p: Place, ctx: &Ctx) -> NodeKind {
        let Some(d) = self.desc(h) else {
            return NodeKind::Unknown;
        };
        if d.size > p.avail {
            return NodeKind::Cut;
        }
        let size = d.size as u8;
        let deep_enough = ctx.depth > self.limits.pretty_depth;
        match &d.kind {
            DKind::Pointer(None) | DKind::Chan => NodeKind::Address,
            &DKind::Pointer(Some(t)) => self.pointer(t, p, ctx),
            DKind::Bool => NodeKind::Bool,
            DKind::Int { .. } if d.name == "time.Duration" && ctx.methods => NodeKind::Duration,
            DKind::Int { signed } => NodeKind::Int {
                size,
                signed: *signed,
            },
            DKind::Float => NodeKind::Float { size },
            DKind::Complex => NodeKind::Complex { size },
            DKind::String => NodeKind::String {
                data: self.string(p.at, p.status, ctx),
            },
            _ if deep_enough => NodeKind::Cut,
            DKind::Struct(_) if d.name == "time.Time" && ctx.methods => self.time(p, ctx),
            DKind::Struct(fields) => {
                let fields: Vec<_> = fields.clone();
                let mut out = Vec::new();
                for f in &fields {
                    let place = Place {
                        at: p.at + f.offset as u32,
                        status: p.status,
                        avail: p.avail.saturating_sub(f.offset),
                    };
                    let n = self.value(f.ty, place, &ctx.field(f.exported()));
                    out.push((f.name.clone(), n));
                }
                NodeKind::Struct {
                    fields: out,
                    more: false,
                }
            }
            &DKind::Array { elem, len } => {
                let esize = self.desc(elem).map_or(0, |e| e.size);
                let shown = len.min(u64::from(ctx.items));
                let elems = (0..shown)
                    .map(|i| {
                        let off = i * esize;
                        let place = Place {
                            at: p.at + off as u32,
                            status: p.status,
                            avail: p.avail.saturating_sub(off),
                        };
                        self.value(elem, place, &ctx.element())
                    })
                    .collect();
                NodeKind::Array { len, elems }
            }
            &DKind::Slice(elem) => self.slice(elem, p, ctx),
            &DKind::Map { key, value } => self.map(key, value, p, ctx),
            &DKind::Interface { empty } => {
                let mut k = self.iface(empty, p, ctx);
                if let NodeKind::Interface(i) = &mut k {
                    i.error = d.name == "error";
                }
                k
            }
            DKind::Func => {
                let code = (self.bytes_left >= 8).then(|| {
                    self.region(
                        8,
                        Addr::Word { at: p.at, add: 0 },
                        Len::Max,
                        Some(p.status),
                        &ctx.guards,
                    )
                });
                NodeKind::Func { code }
            }
            DKind::Unknown => NodeKind::Unknown,
        }
    }

    /// The region of a string's bytes, whose header is at `at`: bytes in the
    /// heap, two words here (their offset there and their count).
    fn string(&mut self, at: u32, status: u32, ctx: &Ctx) -> Option<u32> {
        if self.bytes_left < 16 {
            return None;
        }
        self.bytes_left -= 16;
        let offset_at = self.alloc(8);
        let count_at = self.alloc(8);
        let st = self.statuses;
        self.statuses += 1;
        let max = ctx.string_max;
        self.shape.regions.push(Region {
            at: offset_at,
            max,
            status: st,
            count_at: Some(count_at),
            addr: Addr::Word { at, add: 0 },
            len: Len::Count {
                at: at + 8,
                count: max,
                scale: 1,
            },
            after: Some(status),
            guards: ctx.guards.clone(),
            heap: true,
        });
        Some((self.shape.regions.len() - 1) as u32)
    }

    fn slice(&mut self, elem: u64, p: Place, ctx: &Ctx) -> NodeKind {
        let esize = self.desc(elem).map_or(0, |e| e.size).max(1);
        let n = u64::from(ctx.items).min(self.bytes_left / esize) as u32;
        let below = ctx.element();
        if n == 0 {
            return NodeKind::Slice {
                data: None,
                elems: Vec::new(),
            };
        }
        let r = self.region(
            n * esize as u32,
            Addr::Word { at: p.at, add: 0 },
            Len::Count {
                at: p.at + 8,
                count: n,
                scale: esize as u32,
            },
            Some(p.status),
            &ctx.guards,
        );
        let (base, status, count_at) = {
            let r = self.reg(r);
            (r.at, r.status, r.count_at.unwrap_or(0))
        };
        let elems = (0..n)
            .map(|i| {
                let place = Place {
                    at: base + i * esize as u32,
                    status,
                    avail: esize,
                };
                let c = below.guarded(Guard::CountAbove { at: count_at, n: i });
                self.value(elem, place, &c)
            })
            .collect();
        NodeKind::Slice {
            data: Some(r),
            elems,
        }
    }

    fn pointer(&mut self, t: u64, p: Place, ctx: &Ctx) -> NodeKind {
        let Some(td) = self.desc(t) else {
            return NodeKind::Pointer {
                target: None,
                cut: false,
            };
        };
        let shows = matches!(
            td.kind,
            DKind::Struct(_) | DKind::Array { .. } | DKind::Slice(_) | DKind::Map { .. }
        );
        let follow = matches!(self.mode, Mode::Deep | Mode::DeepVars);
        if !shows || !(ctx.top || follow) {
            return NodeKind::Pointer {
                target: None,
                cut: false,
            };
        }
        let max = td.size.min(self.bytes_left) as u32;
        if ctx.depth > self.limits.pretty_depth || max == 0 {
            return NodeKind::Pointer {
                target: None,
                cut: true,
            };
        }
        let r = self.region(
            max,
            Addr::Word { at: p.at, add: 0 },
            Len::Max,
            Some(p.status),
            &ctx.guards,
        );
        let place = Place {
            at: self.reg(r).at,
            status: self.reg(r).status,
            avail: u64::from(max),
        };
        // `&{…}` is one level: the target is at the pointer's depth.
        let below = Ctx {
            top: false,
            ..ctx.clone()
        };
        let target = self.value(t, place, &below);
        NodeKind::Pointer {
            target: Some(target),
            cut: false,
        }
    }

    fn map(&mut self, key: u64, value: u64, p: Place, ctx: &Ctx) -> NodeKind {
        let (Some(kd), Some(vd)) = (self.desc(key), self.desc(value)) else {
            return NodeKind::Unknown;
        };
        if self.bytes_left < MAP_HEADER {
            return NodeKind::Cut;
        }
        let guards = &ctx.guards;
        let header = self.region(
            MAP_HEADER as u32,
            Addr::Word { at: p.at, add: 0 },
            Len::Max,
            Some(p.status),
            guards,
        );
        let h = self.reg(header).clone();
        let slots = self.maps.slots((kd.size, kd.align), (vd.size, vd.align));
        let group = slots.group as u32;
        // One group of 8 slots per 16 items: a small map (at most 8 entries, the
        // common case) is one group, read whole.
        let want = (ctx.items / 16).max(1);
        let n = u64::from(want).min(self.bytes_left / u64::from(group)) as u32;
        let mut node = MapNode {
            header: Some(header),
            layout: MapLayout::Classic { buckets: 0 },
            slots: Vec::new(),
            key_order: key_order(&kd),
        };
        if n == 0 {
            return NodeKind::Map(Box::new(node));
        }
        let groups = match self.maps {
            MapImpl::Classic => {
                let g = self.region(
                    n * group,
                    Addr::Word {
                        at: h.at + 16,
                        add: 0,
                    },
                    Len::Pow2 {
                        at: h.at + 9,
                        count: n,
                        scale: group,
                    },
                    Some(h.status),
                    guards,
                );
                node.layout = MapLayout::Classic { buckets: g };
                g
            }
            MapImpl::Swiss => {
                // `dirLen` 0: `dirPtr` is the one group; else the first table's
                // groups. Both land in the same bytes, with one status and count.
                let small = self.region(
                    n * group,
                    Addr::Word {
                        at: h.at + 16,
                        add: 0,
                    },
                    Len::Count {
                        at: 0,
                        count: 1,
                        scale: group,
                    },
                    Some(h.status),
                    &[guards.clone(), vec![Guard::WordZero { at: h.at + 24 }]].concat(),
                );
                // One group's count: the word at the field's start is the bias, not
                // a count; a small map's count is written as 1 instead.
                self.shape.regions[small as usize].len = Len::Max;
                self.shape.regions[small as usize].max = group;
                let dir = self.region(
                    8,
                    Addr::Word {
                        at: h.at + 16,
                        add: 0,
                    },
                    Len::Max,
                    Some(h.status),
                    &[guards.clone(), vec![Guard::WordNonZero { at: h.at + 24 }]].concat(),
                );
                let dir_at = self.reg(dir).at;
                let dir_status = self.reg(dir).status;
                let table = self.region(
                    32,
                    Addr::Word { at: dir_at, add: 0 },
                    Len::Max,
                    Some(dir_status),
                    guards,
                );
                let t = self.reg(table).clone();
                let sm = self.reg(small).clone();
                self.shape.regions.push(Region {
                    heap: false,
                    at: sm.at,
                    max: n * group,
                    status: sm.status,
                    count_at: sm.count_at,
                    addr: Addr::Word {
                        at: t.at + 16,
                        add: 0,
                    },
                    len: Len::Mask {
                        at: t.at + 24,
                        count: n,
                        scale: group,
                    },
                    after: Some(t.status),
                    guards: guards.clone(),
                });
                node.layout = MapLayout::Swiss {
                    groups: small,
                    table,
                };
                small
            }
        };
        let g = self.reg(groups).clone();
        let count_at = g.count_at.unwrap_or(0);
        let items = ctx.items;
        let below = ctx.element();
        'groups: for gi in 0..n {
            for i in 0..8u32 {
                if gi * 8 + i >= items.max(8) || self.nodes_left < 2 {
                    break 'groups;
                }
                let base = g.at + gi * group;
                let ctrl = base + slots.ctrl as u32 + i;
                let full = match self.maps {
                    MapImpl::Classic => Guard::ByteAtLeast { at: ctrl, min: 5 },
                    MapImpl::Swiss => Guard::ByteHighClear { at: ctrl },
                };
                let c = below
                    .guarded(Guard::CountAbove {
                        at: count_at,
                        n: gi,
                    })
                    .guarded(full);
                let kat = base + (slots.key + u64::from(i) * slots.key_stride) as u32;
                let vat = base + (slots.value + u64::from(i) * slots.value_stride) as u32;
                let k = self.slot_value(key, kat, g.status, slots.indirect_key, &c);
                let v = self.slot_value(value, vat, g.status, slots.indirect_value, &c);
                node.slots.push(MapSlot {
                    group: gi,
                    ctrl,
                    key: k,
                    value: v,
                });
            }
        }
        NodeKind::Map(Box::new(node))
    }

    /// A map slot's key or value at `at`, or behind the pointer there.
    fn slot_value(&mut self, h: u64, at: u32, status: u32, indirect: bool, ctx: &Ctx) -> u32 {
        let size = self.desc(h).map_or(0, |d| d.size);
        if !indirect {
            return self.value(
                h,
                Place {
                    at,
                    status,
                    avail: size,
                },
                ctx,
            );
        }
        let max = size.min(self.bytes_left) as u32;
        let r = self.region(
            max,
            Addr::Word { at, add: 0 },
            Len::Max,
            Some(status),
            &ctx.guards,
        );
        let place = Place {
            at: self.reg(r).at,
            status: self.reg(r).status,
            avail: u64::from(max),
        };
        self.value(h, place, ctx)
    }

    fn iface(&mut self, empty: bool, p: Place, ctx: &Ctx) -> NodeKind {
        if self.bytes_left < RTYPE_LEN + 16 {
            return NodeKind::Cut;
        }
        let guards = ctx.guards.clone();
        let after = Some(p.status);
        let (itab, type_at, type_status) = if empty {
            (None, p.at, p.status)
        } else {
            let i = self.region(
                16,
                Addr::Word { at: p.at, add: 0 },
                Len::Max,
                after,
                &guards,
            );
            (Some(i), self.reg(i).at + 8, self.reg(i).status)
        };
        let rtype = self.region(
            RTYPE_LEN as u32,
            Addr::Word {
                at: type_at,
                add: 0,
            },
            Len::Max,
            Some(type_status),
            &guards,
        );
        let rt = self.reg(rtype).clone();
        let name = self.target.type_data().map(|td| {
            let max = NAME.min(self.bytes_left) as u32;
            self.region(
                max,
                Addr::TypeName {
                    at: rt.at + RTYPE_STR as u32,
                    types: td.types,
                },
                Len::Max,
                Some(rt.status),
                &guards,
            )
        });
        let wmax = WINDOW.min(self.bytes_left) as u32;
        let window = (wmax > 0).then(|| {
            self.region(
                wmax,
                Addr::Word {
                    at: p.at + 8,
                    add: 0,
                },
                Len::Max,
                after,
                &guards,
            )
        });
        let mut node = IfaceNode {
            empty,
            itab,
            rtype: Some(rtype),
            name,
            window,
            string: None,
            candidates: Vec::new(),
            type_at,
            methods: ctx.methods,
            error: false,
        };
        let Some(window) = window else {
            return NodeKind::Interface(Box::new(node));
        };
        let w = self.reg(window).clone();
        let is_string = Guard::ByteMaskEq {
            at: rt.at + RTYPE_KIND as u32,
            mask: KIND_MASK,
            value: KIND_STRING,
        };
        // A dynamic string, or an error's message: a string at the window's start.
        let text = |p: &mut Self, g: Guard| p.string(w.at, w.status, &ctx.guarded(g));
        node.string = text(self, is_string);
        // Errors whose message is a field print it, where `fmt` calls `Error()`.
        if ctx.methods {
            for name in ["*errors.errorString", "*fmt.wrapError"] {
                let Some(addr) = self.target.runtime_type_addr(name) else {
                    continue;
                };
                let data = text(
                    self,
                    Guard::TypeIs {
                        at: type_at,
                        value: addr,
                    },
                );
                let n = self.node(w.at, w.status, NodeKind::String { data });
                node.candidates.push((addr, n));
            }
        }
        // The named types of the program's own package, for an `any` holding one.
        if empty {
            let below = ctx.below();
            for (name, h) in self.target.package_types("main.") {
                if node.candidates.len() >= MAX_CANDIDATES || self.bytes_left == 0 {
                    break;
                }
                let Some(d) = self.desc(h) else { continue };
                let fits = d.size <= u64::from(w.max) && d.size != 8;
                let shows = matches!(d.kind, DKind::Struct(_) | DKind::Array { .. });
                if !fits || !shows {
                    continue;
                }
                let Some(addr) = self.target.runtime_type_addr(&name) else {
                    continue;
                };
                let c = below.guarded(Guard::TypeIs {
                    at: type_at,
                    value: addr,
                });
                let place = Place {
                    at: w.at,
                    status: w.status,
                    avail: u64::from(w.max),
                };
                let n = self.value(h, place, &c);
                node.candidates.push((addr, n));
            }
        }
        NodeKind::Interface(Box::new(node))
    }

    fn time(&mut self, p: Place, ctx: &Ctx) -> NodeKind {
        if self.bytes_left < 104 + 32 {
            return NodeKind::Cut;
        }
        let loc = self.region(
            104,
            Addr::Word {
                at: p.at + 16,
                add: 0,
            },
            Len::Max,
            Some(p.status),
            &ctx.guards,
        );
        let l = self.reg(loc).clone();
        let zone = self.region(
            32,
            Addr::Word {
                at: l.at + 96,
                add: 0,
            },
            Len::Max,
            Some(l.status),
            &ctx.guards,
        );
        let z = self.reg(zone).clone();
        let zone_name = self.string(z.at, z.status, ctx);
        NodeKind::Time(Box::new(TimeNode {
            loc: Some(loc),
            zone: Some(zone),
            zone_name,
        }))
    }
}

/// The heap of a value's string bytes: a quarter of its budget, a power of two
/// (strings are short; the rest of the budget is what a plan reserves).
fn heap_of(limits: &Limits) -> u32 {
    let quarter = (limits.pretty_bytes / 4).max(1);
    1 << (31 - quarter.leading_zeros())
}

/// How `fmt` sorts a map's keys of this type.
fn key_order(d: &Desc) -> KeyOrder {
    match d.kind {
        DKind::Int { signed: true } => KeyOrder::Signed,
        DKind::Int { signed: false } => KeyOrder::Unsigned,
        DKind::Float => KeyOrder::Float,
        DKind::String => KeyOrder::String,
        DKind::Bool => KeyOrder::Bool,
        _ => KeyOrder::AsRead,
    }
}

/// Where one root of a value is when the probe runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootAt {
    /// In target memory, at the address in R7.
    Memory,
    /// The value is in R7.
    Register,
    /// Assembled in scratch at this offset.
    Scratch(u32),
}

/// A planned value and where its roots come from.
pub struct Planned {
    pub shape: Shape,
    /// Per root: the variable of `$$vars` it is, or `None` for the expression.
    roots: Vec<Option<String>>,
}

impl crate::lower::Lower<'_, '_> {
    /// The plan of a pretty-printed context expression at this probe's site.
    pub(crate) fn plan_value(&mut self, e: &Expr) -> Option<Planned> {
        let ExprKind::Target(t) = &e.kind else {
            return None;
        };
        let limits = self.env.info.limits;
        let (mode, roots): (Mode, Vec<(String, u64)>) = match &t.base {
            TargetBase::Set(set) => {
                let Some(addr) = self.site.addr else {
                    self.em
                        .error(e.span, "context variables need a process probe");
                    return None;
                };
                let vars = match self.env.target.variables(addr) {
                    Ok(v) => v,
                    Err(err) => {
                        self.em.error(e.span, err.to_string());
                        return None;
                    }
                };
                let roots = vars
                    .into_iter()
                    .filter(|v| crate::target::in_set(v, *set))
                    .map(|v| (v.name, v.ty.handle))
                    .collect();
                // `$$parms` as stap prints it; `$$parms$` (and `$$`) each as `$v$$`.
                let mode = if t.pretty == Pretty::Deep {
                    Mode::DeepVars
                } else {
                    Mode::Vars
                };
                (mode, roots)
            }
            _ => {
                let Some(ty) = self.target_type(t) else {
                    self.em
                        .error(e.span, "the type of this value is unknown here");
                    return None;
                };
                let mode = if t.pretty == Pretty::Deep {
                    Mode::Deep
                } else {
                    Mode::Shallow
                };
                (mode, vec![(String::new(), ty.handle)])
            }
        };
        let shape = plan(self.env.target, &limits, mode, &roots);
        let roots = match mode {
            Mode::Vars | Mode::DeepVars => roots.into_iter().map(|(n, _)| Some(n)).collect(),
            _ => vec![None],
        };
        Some(Planned { shape, roots })
    }

    /// Fills the field at scratch offset `field` with the value `p` plans.
    pub(crate) fn emit_value(&mut self, e: &Expr, p: &Planned, field: u32) {
        let ExprKind::Target(t) = &e.kind else {
            return;
        };
        self.value_prologue(&p.shape, field);
        for (i, root) in p.roots.iter().enumerate() {
            let Some(r) = p
                .shape
                .regions
                .iter()
                .find(|r| r.addr == Addr::Root { index: i as u32 })
            else {
                continue;
            };
            let at = match root {
                Some(name) => self.var_root(e, name),
                None => self.pretty_root(e, t),
            };
            if let Some(at) = at {
                self.value_root(&p.shape, field, r, at);
            }
        }
        self.value_regions(&p.shape, field);
    }

    /// The start of a value's field at `field` (a scratch offset): the load bias,
    /// and every status and count zero but slot 0's. Clobbers R1, R2.
    pub(crate) fn value_prologue(&mut self, shape: &Shape, field: u32) {
        let em = &mut self.em;
        if let Some(addr) = self.site.addr {
            em.ctx_reg(Reg::R1, X86Reg::Rip);
            em.imm(Reg::R2, addr as i64);
            em.e(Insn::alu64(AluOp::Sub, Reg::R1, Reg::R2));
            em.store(field, Reg::R1);
        } else {
            em.store_imm(field, Size::DW, 0);
        }
        for off in (shape.status_at..shape.len).step_by(8) {
            em.store_imm(field + off, Size::DW, 0);
        }
        for r in &shape.regions {
            if let Some(c) = r.count_at {
                em.store_imm(field + c, Size::DW, 0);
            }
        }
        em.store_imm(field + shape.cursor_at, Size::DW, 0);
        em.store_imm(field + shape.faults_at, Size::DW, 0);
        em.store_imm(field + shape.status_at, Size::B, i32::from(STATUS_READ));
    }

    /// Copies root `r` (its value at `at`, see [`RootAt`]) into its region.
    /// Clobbers R0–R5.
    pub(crate) fn value_root(&mut self, shape: &Shape, field: u32, r: &Region, at: RootAt) {
        let status = field + shape.status_at + r.status;
        match at {
            RootAt::Memory => {
                self.em.e(Insn::mov64(Reg::R3, Reg::R7));
                let faults = field + shape.faults_at;
                self.read_region(field, r.at, status, faults, Reg::R3, None, r.max);
            }
            RootAt::Register => {
                if r.max >= 8 {
                    self.em.store(field + r.at, Reg::R7);
                } else {
                    for i in 0..r.max {
                        self.em.e(Insn::mov64(Reg::R1, Reg::R7));
                        self.em.e(Insn::alu64(AluOp::Rsh, Reg::R1, (8 * i) as i32));
                        let o = self.em.off(field + r.at + i);
                        self.em
                            .e(Insn::stx(Size::B, crate::emit::SCRATCH, o, Reg::R1));
                    }
                }
                self.em.store_imm(status, Size::B, i32::from(STATUS_READ));
            }
            RootAt::Scratch(o) => {
                for i in (0..r.max).step_by(8) {
                    self.em.load(Reg::R1, o + i);
                    self.em.store(field + r.at + i, Reg::R1);
                }
                self.em.store_imm(status, Size::B, i32::from(STATUS_READ));
            }
        }
    }

    /// Reads every region but the roots, in order, then adds the faults to the
    /// script's counter once. Clobbers R0–R8.
    pub(crate) fn value_regions(&mut self, shape: &Shape, field: u32) {
        for r in &shape.regions {
            if matches!(r.addr, Addr::Root { .. }) {
                continue;
            }
            self.value_region(shape, field, r);
        }
        let none = self.em.a.label();
        self.em.load(Reg::R8, field + shape.faults_at);
        self.em.a.jmp(Cond::Eq, Reg::R8, 0, none);
        self.em.e(Insn::st(
            Size::W,
            Reg::R10,
            crate::emit::KEY_SLOT,
            bpf::script::counter::READ_FAULTS as i32,
        ));
        self.em.a.ld_map(Reg::R1, self.em.storage.counters);
        self.em.e(Insn::mov64(Reg::R2, Reg::R10));
        self.em.e(Insn::alu64(
            AluOp::Add,
            Reg::R2,
            i32::from(crate::emit::KEY_SLOT),
        ));
        self.em.a.call(Helper::MapLookupElem);
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, none);
        self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R8));
        self.em.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
        self.em.a.bind(none);
    }

    /// Marks a region's read as faulted and counts it in the value's fault word
    /// (added to the script's counter once, at the end).
    fn value_fault(&mut self, faults: u32, status: u32) {
        self.em.store_imm(status, Size::B, i32::from(STATUS_FAULT));
        self.em.load(Reg::R1, faults);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
        self.em.store(faults, Reg::R1);
    }

    fn value_region(&mut self, shape: &Shape, field: u32, r: &Region) {
        let skip = self.em.a.label();
        let sa = field + shape.status_at;
        if let Some(a) = r.after {
            let o = self.em.off(sa + a);
            self.em
                .e(Insn::ldx(Size::B, Reg::R1, crate::emit::SCRATCH, o));
            self.em
                .a
                .jmp(Cond::Ne, Reg::R1, i32::from(STATUS_READ), skip);
        }
        for g in &r.guards {
            self.value_guard(field, g, skip);
        }
        // R7 = the address.
        match r.addr {
            Addr::Root { .. } => return,
            Addr::Word { at, add } => {
                self.em.load(Reg::R7, field + at);
                self.em.a.jmp(Cond::Eq, Reg::R7, 0, skip);
                if add != 0 {
                    self.em.imm(Reg::R1, add as i64);
                    self.em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R1));
                }
            }
            Addr::TypeName { at, types } => {
                let o = self.em.off(field + at);
                self.em
                    .e(Insn::ldx(Size::W, Reg::R7, crate::emit::SCRATCH, o));
                self.em.e(Insn::alu64(AluOp::Lsh, Reg::R7, 32));
                self.em.e(Insn::alu64(AluOp::Arsh, Reg::R7, 32));
                self.em.imm(Reg::R1, types as i64);
                self.em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R1));
                self.em.load(Reg::R1, field);
                self.em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R1));
            }
        }
        // R8 = the length.
        let (count, scale) = match r.len {
            Len::Max => {
                if let Some(c) = r.count_at {
                    self.em.store_imm(field + c, Size::DW, 1);
                }
                self.em.e(Insn::mov64(Reg::R8, r.max as i32));
                (None, 1)
            }
            Len::Count { at, count, scale } => {
                self.em.load(Reg::R8, field + at);
                (Some(count), scale)
            }
            Len::Pow2 { at, count, scale } => {
                let o = self.em.off(field + at);
                self.em
                    .e(Insn::ldx(Size::B, Reg::R1, crate::emit::SCRATCH, o));
                let big = self.em.a.label();
                self.em.e(Insn::mov64(Reg::R8, count as i32));
                self.em.a.jmp(Cond::Gt, Reg::R1, 30, big);
                self.em.e(Insn::mov64(Reg::R8, 1));
                self.em.e(Insn::alu64(AluOp::Lsh, Reg::R8, Reg::R1));
                self.em.a.bind(big);
                (Some(count), scale)
            }
            Len::Mask { at, count, scale } => {
                let big = self.em.a.label();
                self.em.load(Reg::R8, field + at);
                self.em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
                self.em.a.jmp(Cond::Ne, Reg::R8, 0, big);
                self.em.e(Insn::mov64(Reg::R8, count as i32));
                self.em.a.bind(big);
                (Some(count), scale)
            }
        };
        if let Some(count) = count {
            let fits = self.em.a.label();
            self.em.a.jmp(Cond::Le, Reg::R8, count as i32, fits);
            self.em.e(Insn::mov64(Reg::R8, count as i32));
            self.em.a.bind(fits);
            if let Some(c) = r.count_at {
                self.em.store(field + c, Reg::R8);
            }
            if scale != 1 {
                self.em.e(Insn::alu64(AluOp::Mul, Reg::R8, scale as i32));
            }
        }
        self.em.a.jmp(Cond::Eq, Reg::R8, 0, skip);
        if r.heap {
            self.heap_read(shape, field, r, skip);
        } else {
            self.em.e(Insn::mov64(Reg::R3, Reg::R7));
            let faults = field + shape.faults_at;
            self.read_region(
                field,
                r.at,
                sa + r.status,
                faults,
                Reg::R3,
                Some(Reg::R8),
                r.max,
            );
        }
        self.em.a.bind(skip);
    }

    /// Reads R8 bytes at R7 (R8 at most `r.max`) to the heap at its cursor, as
    /// many as fit, writing their offset and count; past the heap's end, marks the
    /// region cut.
    fn heap_read(&mut self, shape: &Shape, field: u32, r: &Region, skip: bpf::Label) {
        let status = field + shape.status_at + r.status;
        let h = shape.heap as i32;
        let cut = self.em.a.label();
        if h == 0 {
            self.em.a.ja(cut);
        } else {
            self.em.load(Reg::R1, field + shape.cursor_at);
            self.em.a.jmp(Cond::Ge, Reg::R1, h, cut);
            // R8 = at most what the heap has left.
            self.em.e(Insn::mov64(Reg::R2, h));
            self.em.e(Insn::alu64(AluOp::Sub, Reg::R2, Reg::R1));
            let fits = self.em.a.label();
            self.em.a.jmp(Cond::Le, Reg::R8, Reg::R2, fits);
            self.em.e(Insn::mov64(Reg::R8, Reg::R2));
            self.em.a.bind(fits);
            self.em.store(field + r.at, Reg::R1);
            if let Some(c) = r.count_at {
                self.em.store(field + c, Reg::R8);
            }
            // The verifier sees the offset below the heap's size and the count
            // below one string's: the heap has that much slack after it.
            self.em.e(Insn::alu64(AluOp::And, Reg::R1, h - 1));
            self.em.e(Insn::mov64(Reg::R4, Reg::R1));
            self.em.addr(Reg::R1, field + shape.heap_at);
            self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R4));
            let bounded = self.em.a.label();
            self.em.a.jmp(Cond::Le, Reg::R8, r.max as i32, bounded);
            self.em.e(Insn::mov64(Reg::R8, r.max as i32));
            self.em.a.bind(bounded);
            self.em.e(Insn::mov64(Reg::R2, Reg::R8));
            self.em.e(Insn::mov64(Reg::R3, Reg::R7));
            self.em.a.call(Helper::ProbeReadUser);
            let ok = self.em.a.label();
            let done = self.em.a.label();
            self.em.a.jmp(Cond::Eq, Reg::R0, 0, ok);
            self.value_fault(field + shape.faults_at, status);
            self.em.a.ja(done);
            self.em.a.bind(ok);
            self.em.store_imm(status, Size::B, i32::from(STATUS_READ));
            self.em.a.bind(done);
            self.em.load(Reg::R1, field + shape.cursor_at);
            self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R8));
            self.em.store(field + shape.cursor_at, Reg::R1);
            self.em.a.ja(skip);
        }
        self.em.a.bind(cut);
        self.em.store_imm(status, Size::B, i32::from(STATUS_CUT));
    }

    /// `probe_read_user(field + at, len, addr)` with its status written: `len` is
    /// R8 (bounded by `max` by the caller) or `max`. The address is in R3.
    #[allow(clippy::too_many_arguments)]
    fn read_region(
        &mut self,
        field: u32,
        at: u32,
        status: u32,
        faults: u32,
        addr: Reg,
        len: Option<Reg>,
        max: u32,
    ) {
        if addr != Reg::R3 {
            self.em.e(Insn::mov64(Reg::R3, addr));
        }
        match len {
            Some(l) => {
                // The verifier must see the bound on the size register itself.
                let fits = self.em.a.label();
                self.em.a.jmp(Cond::Le, l, max as i32, fits);
                self.em.e(Insn::mov64(l, max as i32));
                self.em.a.bind(fits);
                self.em.e(Insn::mov64(Reg::R2, l));
            }
            None => self.em.e(Insn::mov64(Reg::R2, max as i32)),
        }
        self.em.addr(Reg::R1, field + at);
        self.em.a.call(Helper::ProbeReadUser);
        let done = self.em.a.label();
        let ok = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.value_fault(faults, status);
        self.em.a.ja(done);
        self.em.a.bind(ok);
        self.em.store_imm(status, Size::B, i32::from(STATUS_READ));
        self.em.a.bind(done);
    }

    /// Jumps to `skip` unless guard `g` holds. Clobbers R1, R2.
    fn value_guard(&mut self, field: u32, g: &Guard, skip: bpf::Label) {
        let byte = |l: &mut Self, at: u32| {
            let o = l.em.off(field + at);
            l.em.e(Insn::ldx(Size::B, Reg::R1, crate::emit::SCRATCH, o));
        };
        match *g {
            Guard::ByteAtLeast { at, min } => {
                byte(self, at);
                self.em.a.jmp(Cond::Lt, Reg::R1, i32::from(min), skip);
            }
            Guard::ByteHighClear { at } => {
                byte(self, at);
                self.em.e(Insn::alu64(AluOp::And, Reg::R1, 0x80));
                self.em.a.jmp(Cond::Ne, Reg::R1, 0, skip);
            }
            Guard::ByteMaskEq { at, mask, value } => {
                byte(self, at);
                self.em.e(Insn::alu64(AluOp::And, Reg::R1, i32::from(mask)));
                self.em.a.jmp(Cond::Ne, Reg::R1, i32::from(value), skip);
            }
            Guard::TypeIs { at, value } => {
                self.em.load(Reg::R1, field + at);
                self.em.load(Reg::R2, field);
                self.em.e(Insn::alu64(AluOp::Sub, Reg::R1, Reg::R2));
                self.em.imm(Reg::R2, value as i64);
                self.em.a.jmp(Cond::Ne, Reg::R1, Reg::R2, skip);
            }
            Guard::WordZero { at } => {
                self.em.load(Reg::R1, field + at);
                self.em.a.jmp(Cond::Ne, Reg::R1, 0, skip);
            }
            Guard::WordNonZero { at } => {
                self.em.load(Reg::R1, field + at);
                self.em.a.jmp(Cond::Eq, Reg::R1, 0, skip);
            }
            Guard::CountAbove { at, n } => {
                self.em.load(Reg::R1, field + at);
                self.em.a.jmp(Cond::Le, Reg::R1, n as i32, skip);
            }
        }
    }
}
