#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    raftq_fuzz::wal_recovery(data);
});
