//! What the fuzz targets share: the small run setup whose methods load fuzzed states.

use episodic::config::{
    AgemParams, ErParams, EwcParams, GemParams, IcarlParams, IndependentParams, MethodConfig,
    MultimodalParams, SingleParams,
};
use episodic::checkpoint::Checkpoint;
use episodic::method::{self, Batch, Heads, Setup};
use episodic::model::{MlpConfig, ModelConfig};

/// A 6-8-4-3 network on 3 tasks with a head each.
pub fn setup() -> Setup {
    Setup {
        model: ModelConfig::Mlp(MlpConfig {
            input: 6,
            hidden: vec![8, 4],
            classes: 3,
        }),
        tasks: 3,
        heads: Heads::PerTask(vec![0..1, 1..2, 2..3]),
        threads: 1,
        seed: 0,
        optimizer: Default::default(),
    }
}

/// Every method, with small memories.
pub fn methods() -> Vec<MethodConfig> {
    vec![
        MethodConfig::Single(SingleParams { learning_rate: 0.1 }),
        MethodConfig::Independent(IndependentParams {
            learning_rate: 0.1,
            finetune: true,
        }),
        MethodConfig::Multimodal(MultimodalParams { learning_rate: 0.1 }),
        MethodConfig::Ewc(EwcParams {
            learning_rate: 0.1,
            memories_per_task: 4,
            strength: 1.0,
        }),
        MethodConfig::Icarl(IcarlParams {
            learning_rate: 0.1,
            memory_size: 6,
            strength: 1.0,
        }),
        MethodConfig::Agem(AgemParams {
            learning_rate: 0.1,
            memories_per_task: 4,
            sample_size: 3,
        }),
        MethodConfig::Er(ErParams {
            learning_rate: 0.1,
            memories_per_task: 2,
        }),
        MethodConfig::Gem(GemParams {
            learning_rate: 0.1,
            memories_per_task: 4,
            margin: 0.5,
            eps: 1e-3,
        }),
    ]
}

/// Loads `checkpoint`'s state into every method of [`setup`]; each method that accepts it
/// trains one step, ends the task and predicts for every task. Nothing may panic.
pub fn exercise(checkpoint: &Checkpoint) {
    let setup = setup();
    for config in methods() {
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
}
