#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftq_fuzz::frame_stream(data);
});
