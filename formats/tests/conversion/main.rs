//! Conversion tests of glint-formats, with qemu-img as the oracle: qcow2 images made by
//! qemu-img and written by qemu-io convert to the same bytes as `qemu-img convert -O raw`, raw
//! converts to qcow2 that `qemu-img check` and `qemu-img compare` accept, and hostile images
//! are refused with a clear error.

mod api;
mod common;
mod every_format_matches_qemu_img;
mod fuzz_corpus;
mod hostile;
mod qcow2_to_raw;
mod raw_to_qcow2;
mod refuses_hostile_sources;
