//! Fuzzes the checkpoint reader as `--resume` uses it: safetensors structure, manifest,
//! checksums and tensor decoding; then every method of a small setup loads the decoded
//! state (refusing what does not fit) and, if it accepted it, trains one step and predicts.
//! Any input must give a value or an error, never a panic.
#![no_main]

use std::path::Path;

use episodic::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checkpoint) = Checkpoint::from_bytes(Path::new("fuzz.safetensors"), data) {
        episodic_fuzz::exercise(&checkpoint);
    }
});
