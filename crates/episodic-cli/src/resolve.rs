//! From options to a run: the data set they name, loaded and checked, and the one resolved
//! configuration (every default filled in from the preset's protocol or the data's shape);
//! and back, from a configuration to the options that reproduce it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use episodic::config::{ExperimentConfig, MethodConfig, MethodKind};
use episodic::data::{DataSource, Dataset, Holdout, Preset, Scenario};
use episodic::model::{MlpConfig, ModelConfig, ResNetConfig};
use episodic::optim::SgdConfig;

use crate::options::{ClassOrderArg, MethodArg, ModelArg, Options, Samples, ScenarioArg};

/// A configuration ready to run, with its data.
pub struct Resolved {
    /// Every setting of the run.
    pub config: ExperimentConfig,
    /// The data set it runs on.
    pub data: Dataset,
    /// Test examples held out of own arrays without test arrays.
    pub holdout: Option<Holdout>,
}

/// Data sets already loaded, by source, so that a suite loads each once.
#[derive(Default)]
pub struct DataCache {
    loaded: HashMap<String, (Dataset, Option<Holdout>)>,
}

impl DataCache {
    /// The data set of `source` (loaded on first use; own arrays' hold-out from `seed`).
    pub fn get(
        &mut self,
        source: &DataSource,
        data_dir: &Path,
        seed: u64,
    ) -> Result<(Dataset, Option<Holdout>)> {
        let holds_out = matches!(source, DataSource::Arrays { .. });
        let key = format!(
            "{}|{}|{}",
            serde_json::to_string(source)?,
            data_dir.display(),
            if holds_out { seed } else { 0 }
        );
        if let Some(hit) = self.loaded.get(&key) {
            return Ok(hit.clone());
        }
        let loaded = source.load(data_dir, seed)?;
        self.loaded.insert(key, loaded.clone());
        Ok(loaded)
    }
}

/// `given`, else `$EPISODIC_DATA`, else the repository's `data/`.
pub fn resolve_data_dir(given: Option<&PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    match std::env::var_os("EPISODIC_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            // crates/episodic-cli -> the repository root.
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = crate_dir
                .parent()
                .and_then(|p| p.parent())
                .unwrap_or(crate_dir);
            root.join("data")
        }
    }
}

/// Where own data at `path` come from: IDX files in a folder, or NumPy arrays.
fn own_source(path: &Path) -> Result<DataSource> {
    if !path.exists() {
        bail!(
            "invalid value for --data: {} does not exist",
            path.display()
        );
    }
    if path.is_dir() {
        match episodic::data::IdxFiles::find(path) {
            Ok(_) => {
                return Ok(DataSource::Idx {
                    dir: path.to_path_buf(),
                })
            }
            // A folder of IDX files with one missing says which, not that x_train.npy is.
            Err(e) if holds_idx_files(path) => return Err(e.into()),
            Err(_) => {}
        }
    }
    Ok(DataSource::Arrays {
        path: path.to_path_buf(),
    })
}

/// Whether `dir` holds a file named as IDX files are (`...-idx3-ubyte`, `...-idx1-ubyte.gz`).
fn holds_idx_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.contains("-idx") && name.trim_end_matches(".gz").ends_with("-ubyte")
        })
    })
}

/// Resolves `options` into a run: loads (or reuses from `cache`) the data, fills every unset
/// option from the preset's protocol or the data, and validates the whole.
pub fn resolve(options: &Options, threads: usize, cache: &mut DataCache) -> Result<Resolved> {
    let method = MethodKind::from(options.method.unwrap_or(MethodArg::Gem));
    let seed = options.seed.unwrap_or(0);
    let data_dir = resolve_data_dir(options.data_dir.as_ref());
    if options.data.is_some() && options.benchmark.is_some() {
        bail!("invalid value for --data: give --data or --benchmark, not both");
    }
    let asked_scenario = crate::options::scenario_of(options)?;
    let (mut config, preset_defaults, data, holdout) = match (&options.data, options.benchmark) {
        (Some(path), _) => {
            let source = own_source(path)?;
            let Some(scenario) = asked_scenario else {
                bail!("invalid value for --data: give --scenario (permutations, rotations, class-split or given)");
            };
            let (data, holdout) = cache.get(&source, &data_dir, seed)?;
            let config = ExperimentConfig::for_data(
                source,
                &data,
                scenario,
                options.tasks,
                method,
                threads,
            )?;
            (config, None, data, holdout)
        }
        (None, preset) => {
            let preset = preset.unwrap_or(Preset::MnistPermutations);
            let mut config = ExperimentConfig::preset(preset, method, threads, &data_dir);
            let (data, holdout) = cache.get(&config.data, &data_dir, seed)?;
            match asked_scenario {
                Some(scenario) if scenario != preset.scenario() => {
                    config.benchmark = format!("{}-{}", config.data.name(), scenario.id());
                    config.tasks = match options.tasks {
                        Some(tasks) => tasks,
                        None => scenario.default_tasks(&data)?,
                    };
                    config.scenario = scenario;
                    (config, None, data, holdout)
                }
                _ => (config, Some(preset), data, holdout),
            }
        }
    };
    config.seed = seed;
    if let Some(tasks) = options.tasks {
        config.tasks = tasks;
    }
    if let Some(samples) = options.samples_per_task {
        config.samples_per_task = samples.count();
    } else if preset_defaults.is_none() && options.data.is_none() {
        // A preset's data under another scenario: that scenario's default for the data.
        config.samples_per_task = match config.scenario {
            Scenario::Permutations | Scenario::Rotations => Some(1000.min(data.train().len())),
            Scenario::ClassSplit { .. } | Scenario::Given => None,
        };
    }
    config.model = match options.model {
        Some(ModelArg::Mlp) => MlpConfig::for_data(data.shape().features(), data.classes()).into(),
        Some(ModelArg::Resnet) => ResNetConfig::paper(data.classes()).into(),
        // A preset's network (the ResNet on CIFAR) for its data; the MLP for any other.
        None => match &config.model {
            ModelConfig::ResNet(c) => ModelConfig::ResNet(c.clone()).with_classes(data.classes()),
            _ => MlpConfig::for_data(data.shape().features(), data.classes()).into(),
        },
    };
    if let Some(nf) = options.nf {
        match &mut config.model {
            ModelConfig::ResNet(c) => c.nf = nf,
            ModelConfig::Mlp(_) => {
                bail!("invalid value for --nf: applies only to --model resnet, not the mlp")
            }
        }
    }
    config.epochs = options.epochs.unwrap_or(1);
    config.batch_size = options.batch_size.unwrap_or(10);
    config.shuffle_tasks = options.shuffle_tasks.unwrap_or(false);
    config.eval_every = options.eval_every;
    config.method.apply(&options.overrides())?;
    config.optimizer = SgdConfig {
        momentum: options.momentum.unwrap_or(0.0),
        weight_decay: options.weight_decay.unwrap_or(0.0),
    };
    config.validate()?;
    Ok(Resolved {
        config,
        data,
        holdout,
    })
}

/// The options that resolve to `config` again (every option explicit; the method's own
/// hyper-parameters only).
pub fn options_of(config: &ExperimentConfig) -> Options {
    let mut o = Options::default();
    let preset = config
        .preset_of()
        .filter(|p| p.scenario() == config.scenario);
    match (preset, &config.data) {
        (Some(preset), DataSource::Vendored { .. }) => o.benchmark = Some(preset),
        (Some(preset), DataSource::Cifar { dir, .. }) => {
            o.benchmark = Some(preset);
            o.data_dir = Some(dir.clone());
        }
        (_, DataSource::Idx { dir }) => o.data = Some(dir.clone()),
        (_, DataSource::Arrays { path }) => o.data = Some(path.clone()),
        (_, DataSource::Memory { .. }) => {}
        (None, source) => {
            // The preset of the same data whose scenario is of the same kind, else the first
            // of the same data (every method option is written out, so either resolves the
            // same configuration).
            let same_data = |p: &Preset| {
                let dir = match source {
                    DataSource::Cifar { dir, .. } => dir.clone(),
                    _ => PathBuf::new(),
                };
                &p.source(&dir) == source
            };
            let candidates: Vec<Preset> = Preset::ALL.into_iter().filter(same_data).collect();
            o.benchmark = candidates
                .iter()
                .find(|p| p.scenario().id() == config.scenario.id())
                .or(candidates.first())
                .copied();
            if let DataSource::Cifar { dir, .. } = source {
                o.data_dir = Some(dir.clone());
            }
        }
    }
    if preset.is_none() {
        o.scenario = Some(match config.scenario {
            Scenario::Permutations => ScenarioArg::Permutations,
            Scenario::Rotations => ScenarioArg::Rotations,
            Scenario::ClassSplit { .. } => ScenarioArg::ClassSplit,
            Scenario::Given => ScenarioArg::Given,
        });
        if let Scenario::ClassSplit {
            classes_per_task,
            order,
        } = config.scenario
        {
            o.classes_per_task = classes_per_task;
            o.class_order = Some(match order {
                episodic::data::ClassOrder::Consecutive => ClassOrderArg::Consecutive,
                episodic::data::ClassOrder::Random => ClassOrderArg::Random,
            });
        }
    }
    o.method = Some(config.method.kind().into());
    match &config.model {
        // The MLP is written only where it is not the default: on the CIFAR presets.
        ModelConfig::Mlp(_) => {
            if matches!(
                config.preset_of(),
                Some(Preset::Cifar100 | Preset::Cifar10Split)
            ) {
                o.model = Some(ModelArg::Mlp);
            }
        }
        ModelConfig::ResNet(c) => {
            o.model = Some(ModelArg::Resnet);
            o.nf = Some(c.nf);
        }
    }
    o.lr = Some(config.method.learning_rate());
    if !config.optimizer.is_plain() {
        o.momentum = Some(config.optimizer.momentum);
        o.weight_decay = Some(config.optimizer.weight_decay);
    }
    match config.method {
        MethodConfig::Ewc(p) => {
            o.memories_per_task = Some(p.memories_per_task);
            o.strength = Some(p.strength);
        }
        MethodConfig::Icarl(p) => {
            o.memory_size = Some(p.memory_size);
            o.strength = Some(p.strength);
        }
        MethodConfig::Agem(p) => {
            o.memories_per_task = Some(p.memories_per_task);
            o.sample_size = Some(p.sample_size);
        }
        MethodConfig::Er(p) => o.memories_per_task = Some(p.memories_per_task),
        MethodConfig::Gem(p) => {
            o.memories_per_task = Some(p.memories_per_task);
            o.margin = Some(p.margin);
        }
        MethodConfig::Independent(p) => o.finetune = Some(p.finetune),
        MethodConfig::Single(_) | MethodConfig::Multimodal(_) => {}
    }
    o.seed = Some(config.seed);
    o.tasks = Some(config.tasks);
    o.samples_per_task = Some(Samples::of(config.samples_per_task));
    o.epochs = Some(config.epochs);
    o.batch_size = Some(config.batch_size);
    o.shuffle_tasks = Some(config.shuffle_tasks);
    o.eval_every = config.eval_every;
    o
}
