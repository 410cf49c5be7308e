//! Fuzzes the checkpoint reader as `--resume` uses it: safetensors structure, manifest,
//! checksums and tensor decoding; then every method of a small setup loads the decoded
//! state (refusing what does not fit) and, if it accepted it, trains one step and predicts.
//! Any input must give a value or an error, never a panic.
#![no_main]

use std::path::Path;

use episodic::checkpoint::Checkpoint;
use episodic::method::{self, Batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = Checkpoint::from_bytes(Path::new("fuzz.safetensors"), data) else {
        return;
    };
    let setup = episodic_fuzz::setup();
    for config in episodic_fuzz::methods() {
        let Ok(mut method) = method::build(&config, &setup) else {
            continue;
        };
        if method.load(&checkpoint.state).is_err() {
            continue;
        }
        let xs = [0.5f32; 12];
        let _ = method.observe(&Batch {
            task: 1,
            xs: &xs,
            ys: &[1, 1],
        });
        let _ = method.end_task(1);
        let mut out = [0u32; 2];
        for task in 0..3 {
            let _ = method.predict(&xs, task, &mut out);
        }
    }
});
