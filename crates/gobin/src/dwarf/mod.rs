//! DWARF of Go executables (to be written).
