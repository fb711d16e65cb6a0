//! Go runtime struct layouts (to be written).
