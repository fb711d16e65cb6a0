//! The least BTF the kernel wants with a program that has BPF functions: each
//! function (the main one too) described by a `func_info` record, the instruction
//! where it starts and the id of a `FUNC` type. Without it the verifier refuses a
//! pointer to a function (`BPF_PSEUDO_FUNC`), and so every helper that calls back.
//!
//! The types here say nothing about arguments: the functions are static, and for
//! a static function the verifier follows the registers themselves, using BTF only
//! for names in its log. One prototype serves all: no parameters, returning a
//! 64-bit signed integer.
//!
//! Layout (`include/uapi/linux/btf.h`): a 24-byte header, the types (each a
//! 12-byte `btf_type`, an `INT` followed by one more word), then the strings.

/// `BTF_MAGIC`, little endian in the file.
const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
/// `BTF_INT_SIGNED`, in the encoding byte of an `INT`'s extra word.
const INT_SIGNED: u32 = 1;
/// `btf_func_linkage`: `BTF_FUNC_STATIC`.
const LINKAGE_STATIC: u32 = 0;

/// A BTF blob and, for each function, the type id its `func_info` record names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncBtf {
    pub blob: Vec<u8>,
    pub func_types: Vec<u32>,
}

/// BTF for `names.len()` static functions called `names[i]` (identifiers).
pub fn functions(names: &[String]) -> FuncBtf {
    let mut strings = vec![0u8];
    let mut add_str = |s: &str| {
        let at = strings.len() as u32;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        at
    };
    let mut types: Vec<u8> = Vec::new();
    let mut push = |words: &[u32]| {
        for w in words {
            types.extend_from_slice(&w.to_le_bytes());
        }
    };
    // [1] long: 8 bytes, signed, 64 bits.
    let long = add_str("long");
    push(&[long, KIND_INT << 24, 8, (INT_SIGNED << 24) | 64]);
    // [2] long (void): no parameters.
    push(&[0, KIND_FUNC_PROTO << 24, 1]);
    let mut func_types = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let n = add_str(name);
        push(&[n, (KIND_FUNC << 24) | LINKAGE_STATIC, 2]);
        func_types.push(3 + i as u32);
    }
    let mut blob = Vec::with_capacity(24 + types.len() + strings.len());
    blob.extend_from_slice(&MAGIC.to_le_bytes());
    blob.push(1); // version
    blob.push(0); // flags
    for w in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        blob.extend_from_slice(&w.to_le_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strings);
    FuncBtf { blob, func_types }
}

/// The `func_info` records (`struct bpf_func_info`: instruction offset, type id) of
/// a program whose functions start at 0 and at `starts`.
pub fn func_info(starts: &[usize], func_types: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * (starts.len() + 1));
    for (at, ty) in std::iter::once(0)
        .chain(starts.iter().copied())
        .zip(func_types)
    {
        out.extend_from_slice(&(at as u32).to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_types_and_strings_line_up() {
        let names = ["gotap_p0".to_string(), "gotap_fn1".to_string()];
        let b = functions(&names);
        assert_eq!(&b.blob[..4], &[0x9f, 0xeb, 1, 0]);
        assert_eq!(word(&b.blob, 4), 24);
        let (type_len, str_off, str_len) =
            (word(&b.blob, 12), word(&b.blob, 16), word(&b.blob, 20));
        // INT (16 bytes), FUNC_PROTO (12), two FUNCs (12 each).
        assert_eq!(type_len, 16 + 12 + 24);
        assert_eq!(str_off, type_len);
        assert_eq!(b.blob.len() as u32, 24 + type_len + str_len);
        let strings = &b.blob[24 + type_len as usize..];
        assert_eq!(strings, b"\0long\0gotap_p0\0gotap_fn1\0");
        assert_eq!(b.func_types, vec![3, 4]);
        // The second FUNC is named gotap_fn1 and has the prototype, type 2.
        let f2 = 24 + 16 + 12 + 12;
        let name = word(&b.blob, f2) as usize;
        assert!(strings[name..].starts_with(b"gotap_fn1\0"));
        assert_eq!(word(&b.blob, f2 + 4) >> 24, KIND_FUNC);
        assert_eq!(word(&b.blob, f2 + 8), 2);
        assert_eq!(
            func_info(&[7], &b.func_types),
            [0u32, 3, 7, 4]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect::<Vec<u8>>()
        );
    }
}
