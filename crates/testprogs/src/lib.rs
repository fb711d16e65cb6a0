//! Builds the Go programs under `tests/testprogs/` on demand, for each installed Go
//! toolchain and each build variant, and caches the executables by the hash of their
//! source, the toolchain's version and the variant's flags (as Delve's `BuildFixture`).
//!
//! Toolchains are found in one place: `$GOTAP_GO_ROOT`, or `tools/go` at the top of
//! the repository, where `scripts/install-toolchains` puts them (`tools/go/1.25/bin/go`).
//! Tests that need a toolchain fail with the command that installs it, never skip.

pub mod peers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// How a test program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `go build`: optimised, with DWARF.
    Default,
    /// `-ldflags=-s -w`: no symbol table, no DWARF; only `.gopclntab` is left.
    Stripped,
    /// `-buildmode=pie`: position independent.
    Pie,
    /// `-gcflags=all=-N -l`: unoptimised, nothing inlined.
    NoOpt,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Default,
        Variant::Stripped,
        Variant::Pie,
        Variant::NoOpt,
    ];

    fn flags(self) -> &'static [&'static str] {
        match self {
            Variant::Default => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
            Variant::NoOpt => &["-gcflags=all=-N -l"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::NoOpt => "noopt",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One installed Go toolchain.
#[derive(Clone, Debug)]
pub struct Toolchain {
    /// The minor version as a directory name: `1.19`, `1.25`.
    pub minor: String,
    /// What `go version` says, such as `go1.25.5`.
    pub version: String,
    /// The `go` command.
    pub go: PathBuf,
}

impl Toolchain {
    /// `(1, 25)` for Go 1.25.
    pub fn minor_number(&self) -> (u32, u32) {
        let mut it = self.minor.split('.').filter_map(|p| p.parse().ok());
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// The toolchain's GOROOT, where `src/runtime/stack.go` lives.
    pub fn goroot(&self) -> PathBuf {
        let out = self
            .go_command()
            .args(["env", "GOROOT"])
            .output()
            .expect("run go env GOROOT");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// A `go` command with the environment every build here uses: the local toolchain,
    /// no module downloads, and caches inside the repository's target folder.
    pub fn go_command(&self) -> Command {
        let cache = target_dir().join("gocache").join(&self.minor);
        let mut cmd = Command::new(&self.go);
        cmd.env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", cache.join("build"))
            .env("GOPATH", cache.join("path"))
            .env("GOENV", "off")
            .env_remove("GOROOT");
        cmd
    }
}

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The folder that holds one folder per toolchain.
pub fn go_root() -> PathBuf {
    std::env::var_os("GOTAP_GO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tools/go"))
}

/// Every installed toolchain, oldest first. Panics, with the command that installs
/// them, when there are none: a test that needs Go must not pass without it.
pub fn toolchains() -> Vec<Toolchain> {
    let root = go_root();
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&root) {
        for entry in dir.flatten() {
            let go = entry.path().join("bin/go");
            if !go.exists() {
                continue;
            }
            let minor = entry.file_name().to_string_lossy().into_owned();
            let mut tc = Toolchain {
                minor,
                version: String::new(),
                go,
            };
            if let Ok(out) = tc.go_command().arg("version").output() {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(v) = text.split_whitespace().nth(2) {
                    tc.version = v.to_string();
                    found.push(tc);
                }
            }
        }
    }
    found.sort_by_key(|t| t.minor_number());
    assert!(
        !found.is_empty(),
        "no Go toolchain under {}: run scripts/install-toolchains (or set GOTAP_GO_ROOT)",
        root.display()
    );
    found
}

/// The newest installed toolchain.
pub fn newest() -> Toolchain {
    toolchains().pop().expect("a toolchain")
}

/// The source of a test program: `tests/testprogs/NAME.go`.
pub fn source(name: &str) -> PathBuf {
    repo_root()
        .join("tests/testprogs")
        .join(format!("{name}.go"))
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds `tests/testprogs/NAME.go` with `tc` in `variant` and returns the executable's
/// path. A build with the same source, toolchain and flags is reused.
pub fn build(name: &str, tc: &Toolchain, variant: Variant) -> PathBuf {
    let src = source(name);
    let text = std::fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let mut h = Fnv::new();
    h.write(&text);
    h.write(tc.version.as_bytes());
    for f in variant.flags() {
        h.write(f.as_bytes());
    }
    let dir = target_dir()
        .join("testprogs")
        .join(format!("{name}-{}-{}-{:016x}", tc.minor, variant, h.0));
    let exe = dir.join(name);
    if exe.exists() {
        return exe;
    }
    // Concurrent tests build one at a time; a second test that wanted the same
    // program finds it built when it gets the lock.
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if exe.exists() {
        return exe;
    }
    std::fs::create_dir_all(&dir).expect("create test program folder");
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let out = tc
        .go_command()
        .arg("build")
        .args(variant.flags())
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .current_dir(src.parent().expect("testprogs folder"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tc.go.display()));
    assert!(
        out.status.success(),
        "go{} build {} ({variant}) failed:\n{}",
        tc.minor,
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("move built program into place");
    exe
}

/// Every (toolchain, variant) pair, for tests that run across all of them.
pub fn matrix() -> Vec<(Toolchain, Variant)> {
    let mut all = Vec::new();
    for tc in toolchains() {
        for v in Variant::ALL {
            all.push((tc.clone(), v));
        }
    }
    all
}

/// FNV-1a, 64 bits: a stable hash for cache keys (std's hasher may change between
/// Rust releases, and the cache outlives a build).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3) ^ 0xff;
    }
}
