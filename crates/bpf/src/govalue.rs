//! A Go value sent whole in a record, to be printed in user space as Go's `%+v`
//! prints it (`$x$`, `$x$$`, each variable of `$$vars`): which bytes of the traced
//! program the probe copies ([`Region`]s), and how user space reads them back
//! ([`Node`]s). Codegen plans a [`Shape`] once per expression, within the limits of
//! `lang::Limits` (depth, items, bytes); the probe only copies, and every decision
//! that needs the bytes (a nil pointer, a slice's length, which map slots are full, an
//! interface's dynamic type) is a guard or a length the plan wrote down. So the
//! generated code is a straight line of bounded reads whatever the type, and a
//! recursive type costs no more than the budget.
//!
//! The field of a record that holds one value is laid out as: the load bias of the
//! binary (`u64`: the probe's pc now minus its address as linked, for a PIE), then
//! each region's bytes at its [`Region::at`] and the element counts the probe found,
//! then one status byte per region ([`STATUS_UNREAD`] …) from [`Shape::status_at`].
//! Every offset in a shape counts from the start of the field.
//!
//! Strings do not have bytes of their own: their bytes go, in the order the probe
//! reads them, to one heap of [`Shape::heap`] bytes at [`Shape::heap_at`], so a
//! value's short strings take only what they hold (its budget is the bytes copied,
//! not the bytes a plan could copy). The probe keeps the heap's cursor in the word
//! at [`Shape::cursor_at`], writes each string's offset in the heap at its
//! [`Region::at`] and its length at [`Region::count_at`], and once the heap is full
//! marks the strings after it [`STATUS_CUT`].

/// A region the probe did not read: its parent was nil or unread, a guard failed,
/// or the pointer it follows was 0.
pub const STATUS_UNREAD: u8 = 0;
/// A region read whole (as many bytes as its length said).
pub const STATUS_READ: u8 = 1;
/// A region whose read faulted (its bytes are zeros).
pub const STATUS_FAULT: u8 = 2;
/// A heap region left out because the heap was full.
pub const STATUS_CUT: u8 = 3;

/// One pretty-printed value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// In the order the probe reads them: a region comes after the one it reads
    /// its address from.
    pub regions: Vec<Region>,
    pub nodes: Vec<Node>,
    /// The value's node.
    pub root: u32,
    /// Bytes of the record field.
    pub len: u32,
    /// Where the status bytes start.
    pub status_at: u32,
    /// How many status bytes there are.
    pub statuses: u32,
    /// The heap of string bytes: where it starts and its size (a power of two, or
    /// 0), and where the probe keeps its cursor.
    pub heap_at: u32,
    pub heap: u32,
    pub cursor_at: u32,
    /// Where the probe counts the reads that faulted (added to the script's
    /// `READ_FAULTS` counter once per value).
    pub faults_at: u32,
}

/// A piece of target memory copied into the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Where its bytes go in the field.
    pub at: u32,
    /// The most bytes it reads.
    pub max: u32,
    /// Its status byte (an index from [`Shape::status_at`]); two regions that
    /// cannot both be read (a small and a large Swiss map) may share one, and their
    /// bytes.
    pub status: u32,
    /// Where the probe writes how many elements it read (a `u64`), for a length
    /// that counts them; 0 when it read nothing.
    pub count_at: Option<u32>,
    pub addr: Addr,
    pub len: Len,
    /// The status slot that must say [`STATUS_READ`] before this region is read
    /// (the region its address comes from).
    pub after: Option<u32>,
    /// Conditions on bytes already read, all of which must hold.
    pub guards: Vec<Guard>,
    /// Its bytes go to the heap; `at` is where the probe writes their offset there.
    pub heap: bool,
}

/// Where a region is in target memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// The value itself: root `index` of the expression (one per variable of
    /// `$$vars`), copied from where it is (memory, registers or the probe's scratch).
    Root { index: u32 },
    /// The pointer word at field offset `at`, plus `add` bytes.
    Word { at: u32, add: u64 },
    /// A runtime type's name: `types + nameOff` (the `i32` at `at`), `types` the
    /// linked address of the module's type data (the bias is added at run time).
    TypeName { at: u32, types: u64 },
}

/// How many bytes a region reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Len {
    /// [`Region::max`].
    Max,
    /// `min(word at at, count) * scale`: a string's bytes, a slice's elements.
    Count { at: u32, count: u32, scale: u32 },
    /// `min(1 << (byte at at), count) * scale`: a classic map's buckets.
    Pow2 { at: u32, count: u32, scale: u32 },
    /// `min(word at at + 1, count) * scale`: a Swiss table's groups (its mask).
    Mask { at: u32, count: u32, scale: u32 },
}

/// A condition on bytes of the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The byte at `at` is at least `min` (a classic map's full slot).
    ByteAtLeast { at: u32, min: u8 },
    /// The byte at `at` has its high bit clear (a Swiss map's full slot).
    ByteHighClear { at: u32 },
    /// `byte & mask == value` (a runtime type's kind).
    ByteMaskEq { at: u32, mask: u8, value: u8 },
    /// The word at `at` minus the bias is `value` (an interface's dynamic type is
    /// the runtime type linked at `value`).
    TypeIs { at: u32, value: u64 },
    /// The word at `at` is 0.
    WordZero { at: u32 },
    /// The word at `at` is not 0.
    WordNonZero { at: u32 },
    /// The count at `at` (a [`Region::count_at`]) is above `n`: element `n` was read.
    CountAbove { at: u32, n: u32 },
}

/// How user space prints the bytes at [`Node::at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Field offset of the value's first byte.
    pub at: u32,
    /// The status slot of the region the bytes are in.
    pub status: u32,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Bool,
    Int {
        size: u8,
        signed: bool,
    },
    Float {
        size: u8,
    },
    Complex {
        size: u8,
    },
    /// A string header (pointer, length); its bytes are region `data` (`None`: left
    /// out by the budget).
    String {
        data: Option<u32>,
    },
    /// Fields by name; `more`: fields left out by the item limit.
    Struct {
        fields: Vec<(String, u32)>,
        more: bool,
    },
    /// An array of `len` elements, the first `elems.len()` of them planned.
    Array {
        len: u64,
        elems: Vec<u32>,
    },
    /// A slice header; its first `elems.len()` elements are in region `data`.
    Slice {
        data: Option<u32>,
        elems: Vec<u32>,
    },
    /// A pointer: `&` and the value at `target` when planned (`Go` prints pointers
    /// to structs, arrays, slices and maps so at the top), else its address.
    Pointer {
        target: Option<u32>,
        /// Followed but left out by a limit: printed `&…`.
        cut: bool,
    },
    /// A channel, `unsafe.Pointer` or uintptr-like value printed as an address.
    Address,
    /// A func value: the code pointer in the closure at region `code`.
    Func {
        code: Option<u32>,
    },
    /// A map (`map[k:v …]`, its entries sorted as `fmt` sorts them).
    Map(Box<MapNode>),
    /// An interface value.
    Interface(Box<IfaceNode>),
    /// `time.Duration` as `Duration.String()` prints it.
    Duration,
    /// `time.Time` as `Time.String()` prints it.
    Time(Box<TimeNode>),
    /// The variables of `$$vars`: `name=value name=value`.
    Vars(Vec<(String, u32)>),
    /// Something a limit left out: `…`.
    Cut,
    /// Something the plan could not read (a type gotap cannot lay out): `?`.
    Unknown,
}

/// A map and the slots the probe read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapNode {
    /// The header (`hmap` or the Swiss `Map`), its entry count at offset 0.
    pub header: Option<u32>,
    pub layout: MapLayout,
    /// The slots read, in bucket or group order.
    pub slots: Vec<MapSlot>,
    /// Key and value types, for sorting: integers, floats, strings and bools sort
    /// by value, everything else keeps the order read.
    pub key_order: KeyOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    Signed,
    Unsigned,
    Float,
    String,
    Bool,
    AsRead,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapLayout {
    /// Go up to 1.23 (`hmap`): buckets of 8 slots, `tophash` bytes first; region
    /// `buckets` holds the first ones (`B` at header offset 9).
    Classic { buckets: u32 },
    /// Go 1.24 on: one group of 8 slots when `dirLen` (header offset 24) is 0, else
    /// the first groups of the first table (region `table`, its mask at 24). Both
    /// land in region `groups`.
    Swiss { groups: u32, table: u32 },
}

/// One slot: `group` is the bucket or group it is in (slots of groups the probe did
/// not read are skipped), `ctrl` the field offset of its control or tophash byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSlot {
    pub group: u32,
    pub ctrl: u32,
    pub key: u32,
    pub value: u32,
}

/// An interface value: its dynamic type read from the binary's own type data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceNode {
    /// `interface{}` (type word first) or not (`itab` first, read in region `itab`).
    pub empty: bool,
    pub itab: Option<u32>,
    /// The runtime `_type` (48 bytes: size, ptrdata, hash, tflag, align, fieldAlign,
    /// kind…, str at 40).
    pub rtype: Option<u32>,
    /// The type's name bytes (flags, varint length, text).
    pub name: Option<u32>,
    /// Bytes at the data word.
    pub window: Option<u32>,
    /// When the dynamic type is a string: its bytes.
    pub string: Option<u32>,
    /// Dynamic types planned in full: the linked address of their runtime type
    /// record (the type word less the bias), and their node.
    pub candidates: Vec<(u64, u32)>,
    /// Where the type word is (the eface's first word, or the itab's second).
    pub type_at: u32,
    /// Print an error's message where `fmt` would call `Error()`.
    pub methods: bool,
    /// The interface is `error`: a dynamic type whose message is not a field prints
    /// as `(type)(value)`, since its `Error()` cannot be called.
    pub error: bool,
}

/// A `time.Time` (wall, ext, loc) and its location's cached zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeNode {
    /// The `*Location` (cacheStart at 80, cacheEnd at 88, zone slice len at 24).
    pub loc: Option<u32>,
    /// The cached `zone` (name string, offset at 16).
    pub zone: Option<u32>,
    /// The zone's name bytes.
    pub zone_name: Option<u32>,
}
