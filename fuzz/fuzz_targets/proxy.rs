//! libFuzzer target: `wharf_proto::fuzz::proxy` must never panic, whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wharf_proto::fuzz::proxy(data));
