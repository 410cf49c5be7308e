//! The options of an experiment, defined once: each field is a command-line flag and a key of
//! a configuration file (the flag's name without `--`), so that flags, TOML files, printed
//! configurations, suite grids and job command lines all speak the same names.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use episodic::config::{MethodKind, MethodOverrides};
use episodic::data::{ClassOrder, Preset, Scenario};
use serde::{Deserialize, Serialize};

/// Networks, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelArg {
    /// The paper's MNIST network: two hidden layers of 100, sized for the data.
    Mlp,
    /// The paper's reduced ResNet-18 (CIFAR; 3 x 32 x 32 images).
    Resnet,
}

/// Methods, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodArg {
    /// Gradient Episodic Memory.
    Gem,
    /// One network fine-tuned on the stream (no memory).
    Single,
    /// One network per task, each 1/T as wide.
    Independent,
    /// A task-specific input layer, the rest shared.
    Multimodal,
    /// Elastic Weight Consolidation.
    Ewc,
    /// iCaRL: exemplars, nearest mean of exemplars, distillation (class splits only).
    Icarl,
    /// Averaged GEM: one reference gradient from all past memories.
    Agem,
    /// Experience replay from a reservoir-sampled memory.
    Er,
}

impl From<MethodArg> for MethodKind {
    fn from(arg: MethodArg) -> Self {
        match arg {
            MethodArg::Gem => Self::Gem,
            MethodArg::Single => Self::Single,
            MethodArg::Independent => Self::Independent,
            MethodArg::Multimodal => Self::Multimodal,
            MethodArg::Ewc => Self::Ewc,
            MethodArg::Icarl => Self::Icarl,
            MethodArg::Agem => Self::Agem,
            MethodArg::Er => Self::Er,
        }
    }
}

impl From<MethodKind> for MethodArg {
    fn from(kind: MethodKind) -> Self {
        match kind {
            MethodKind::Gem => Self::Gem,
            MethodKind::Single => Self::Single,
            MethodKind::Independent => Self::Independent,
            MethodKind::Multimodal => Self::Multimodal,
            MethodKind::Ewc => Self::Ewc,
            MethodKind::Icarl => Self::Icarl,
            MethodKind::Agem => Self::Agem,
            MethodKind::Er => Self::Er,
        }
    }
}

/// Scenarios, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioArg {
    /// A random pixel permutation per task (every channel alike).
    Permutations,
    /// Task t of T (counted from 1) rotated by an angle drawn in [(t-1)*180/T, t*180/T) degrees
    /// (square images).
    Rotations,
    /// --classes-per-task classes per task, a head per task.
    ClassSplit,
    /// The tasks the data file states (arrays task_train and task_test).
    Given,
}

/// Class orders of a class split, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassOrderArg {
    /// Classes 0..N to the first task, N..2N to the second, and so on.
    Consecutive,
    /// The classes shuffled from the seed first.
    Random,
}

impl From<ClassOrderArg> for ClassOrder {
    fn from(arg: ClassOrderArg) -> Self {
        match arg {
            ClassOrderArg::Consecutive => Self::Consecutive,
            ClassOrderArg::Random => Self::Random,
        }
    }
}

/// Training examples per task: a number, or `all` of each task's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Samples {
    /// This many, drawn at random.
    Count(usize),
    /// The word `all`.
    Word(AllWord),
}

/// The word `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllWord {
    /// Every example.
    All,
}

impl Samples {
    /// As the library counts it (`None`: all).
    pub fn count(self) -> Option<usize> {
        match self {
            Self::Count(n) => Some(n),
            Self::Word(AllWord::All) => None,
        }
    }

    /// From the library's count.
    pub fn of(count: Option<usize>) -> Self {
        count.map_or(Self::Word(AllWord::All), Self::Count)
    }
}

impl FromStr for Samples {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Self::Word(AllWord::All));
        }
        s.parse()
            .map(Self::Count)
            .map_err(|e| format!("expected a number or 'all': {e}"))
    }
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

/// Every option of an experiment. On the command line each is a flag; in a TOML file each
/// is a key spelled as the flag without `--` (`samples-per-task = 50`). Unset options take
/// the preset's or the paper's defaults when the configuration is resolved.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// A named benchmark (data set, scenario, protocol): mnist-permutations, mnist-rotations,
    /// mnist-split, fashion-permutations, fashion-rotations, fashion-split, cifar100 or
    /// cifar10-split [default: mnist-permutations unless --data is given].
    #[arg(long, value_name = "NAME", value_parser = parse_preset)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<Preset>,

    /// Your own data instead of a benchmark: an .npz file, or a folder of .npy files
    /// (x_train, y_train, optional x_test, y_test, task_train, task_test), or a folder of IDX
    /// files (*train-images-idx3-ubyte[.gz] and the like) [needs --scenario].
    #[arg(long, value_name = "PATH", conflicts_with = "benchmark")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,

    /// Folder of the vendored data sets (mnist/, fashion-mnist/) [default: $EPISODIC_DATA, else
    /// the repository's data/]; for cifar100 and cifar10-split, the folder the official archive
    /// unpacks to (cifar-100-binary/, cifar-100-python/, cifar-10-batches-bin/,
    /// cifar-10-batches-py/) or the folder holding it.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// How tasks are made [default: the benchmark's].
    #[arg(long, value_enum, value_name = "KIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioArg>,

    /// Classes per task of a class split [default: the classes divided equally by --tasks].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes_per_task: Option<usize>,

    /// Order in which a class split gives classes to tasks [default: consecutive].
    #[arg(long, value_enum, value_name = "ORDER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_order: Option<ClassOrderArg>,

    /// The continual-learning method [default: gem].
    #[arg(long, value_enum, value_name = "METHOD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<MethodArg>,

    /// The network: mlp or resnet [default: resnet on cifar100 and cifar10-split, mlp
    /// otherwise].
    #[arg(long, value_enum, value_name = "NET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelArg>,

    /// Width of the ResNet's first stage (resnet) [default: 20, the paper's].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nf: Option<usize>,

    /// SGD learning rate [default: the paper's per method and benchmark].
    #[arg(long, value_name = "RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,

    /// SGD momentum of every method, in [0, 1) (torch's, no dampening) [default: 0, the
    /// paper's].
    #[arg(long, value_name = "MU")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,

    /// SGD L2 weight decay of every method, >= 0 [default: 0, the paper's].
    #[arg(long, value_name = "DECAY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,

    /// Memory slots per task of gem, agem and er [default: 256], or ewc's Fisher examples
    /// [default: 10; 1000 on rotations].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memories_per_task: Option<usize>,

    /// Lower bound on GEM's dual variables, "memory strength" (gem) [default: 0.5].
    #[arg(long, value_name = "GAMMA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,

    /// Penalty strength of ewc [default: 3; 1000 on rotations; 1 on CIFAR], or distillation
    /// weight of icarl [default: 1].
    #[arg(long, value_name = "LAMBDA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,

    /// Memories drawn for each reference gradient (agem) [default: 256].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_size: Option<usize>,

    /// Total exemplars (icarl) [default: 1280].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_size: Option<usize>,

    /// Start each task's network from the previous task's (independent) [default: true].
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune: Option<bool>,

    /// Seed of every random draw (permutations, angles, subsets, shuffles, initialisation)
    /// [default: 0].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,

    /// Number of tasks [default: the benchmark's: 20, or 5 on the 10-class splits; for own
    /// data, 20, the classes / --classes-per-task, or the tasks the file states].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<usize>,

    /// Training examples drawn per task, or `all` [default: 1000; all on CIFAR and on own
    /// data's class splits and given tasks].
    #[arg(long, value_name = "N|all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_task: Option<Samples>,

    /// Passes over each task's examples [default: 1].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,

    /// Mini-batch size (batches never cross tasks) [default: 10].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,

    /// Train the tasks in a random (seeded) order [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_tasks: Option<bool>,

    /// Also evaluate every N mini-batches (learning curves; task ends are always evaluated).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,

    /// Threads for matrix products [default: all cores] (`run` only; set on its command line
    /// or in its file).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,

    /// Where to write the results JSON (`run` only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,

    /// Checkpoint directory (`run` only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<PathBuf>,

    /// Checkpoint period in mini-batches (`run` only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
}

/// Keys of [`Options`] that only `episodic run` takes (a suite sets them per job).
pub const RUN_ONLY_KEYS: [&str; 4] = ["threads", "out", "checkpoint-dir", "checkpoint-every"];

impl Options {
    /// The method-specific options as library overrides.
    pub fn overrides(&self) -> MethodOverrides {
        MethodOverrides {
            learning_rate: self.lr,
            memories_per_task: self.memories_per_task,
            margin: self.margin,
            strength: self.strength,
            sample_size: self.sample_size,
            memory_size: self.memory_size,
            finetune: self.finetune,
        }
    }

    /// The options as a JSON object of the keys that are set.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// Options from a JSON object of keys (unknown keys and wrong types are errors).
    pub fn from_map(map: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// These options with every option set in `over` replacing this one's (flags over a
    /// file).
    pub fn overlaid(&self, over: &Options) -> Result<Self> {
        let mut map = self.to_map();
        map.extend(over.to_map());
        Self::from_map(map)
    }

    /// The command-line flags that set exactly these options (for job lists and child runs).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (key, value) in self.to_map() {
            args.push(format!("--{key}"));
            args.push(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        }
        args
    }

    /// The options as TOML, one `key = value` a line.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).context("cannot write the configuration as TOML")
    }

    /// Reads options from a TOML file, or from a results JSON file's embedded configuration
    /// (by its `.json` extension), naming the file, and the key and line of a bad entry.
    pub fn read_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            let results: episodic::results::RunResults = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a results file: {e}", path.display()))?;
            return Ok(crate::resolve::options_of(&results.config));
        }
        Self::parse_toml(path, &text)
    }

    /// Options from the TOML `text` of the file `path` (named in errors, with the key and
    /// line of a bad entry).
    pub fn parse_toml(path: &std::path::Path, text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| toml_error(path, text, &e))
    }
}

/// A TOML error as one line: `FILE line L: what` (the key and its expected type or the
/// unknown key's name are in toml's message).
pub fn toml_error(path: &std::path::Path, text: &str, err: &toml::de::Error) -> anyhow::Error {
    let message = err.message().replace('\n', " ");
    // toml places an unknown key's error on the whole table: find the key's own line.
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let key_line = match unknown {
        Some(key) => line_of_key(text, key),
        None if message.starts_with("duplicate key") => second_setting_line(text),
        None => None,
    };
    let message = match (message.starts_with("duplicate key"), key_line) {
        (true, Some(line)) => {
            let key = text.lines().nth(line - 1).and_then(|l| l.split_once('='));
            format!("duplicate key `{}`", key.map_or("", |(k, _)| k.trim()))
        }
        _ => message,
    };
    let line = match key_line {
        Some(line) => Some(line),
        None => err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1)),
    };
    // toml lists every field (or value) it expected after an unknown one: keep the line
    // short.
    let message = match message.find(", expected one of") {
        Some(at) if message.starts_with("unknown variant") => {
            format!("{} (see --help for the values)", &message[..at])
        }
        Some(at) => format!("{} (see --help for the keys)", &message[..at]),
        None => message,
    };
    // Name the key set on that line when toml's message does not.
    let key = line
        .and_then(|l| text.lines().nth(l - 1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !message.contains(&format!("`{k}`")));
    let message = match key {
        Some(key) => format!("`{key}`: {message}"),
        None => message,
    };
    match line {
        Some(line) => anyhow::anyhow!("{} line {line}: {message}", path.display()),
        None => anyhow::anyhow!("{}: {message}", path.display()),
    }
}

/// The 1-based line of the first top-level key set a second time in `text`, if any.
fn second_setting_line(text: &str) -> Option<usize> {
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('[') {
            seen.clear();
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"').to_string();
            if !line.starts_with('#') && !seen.insert(key) {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The 1-based line on which `key = ...` is set in `text`, if any.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix('"')
                .and_then(|r| r.strip_prefix(key))
                .and_then(|r| r.strip_prefix('"'))
                .or_else(|| l.strip_prefix(key));
            l.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The scenario the options ask for, when they ask for one (`None`: the preset's).
pub fn scenario_of(options: &Options) -> Result<Option<Scenario>> {
    let class_order = options.class_order.map(ClassOrder::from);
    let class_options = options.classes_per_task.is_some() || class_order.is_some();
    let scenario = match options.scenario {
        None if class_options => {
            // --classes-per-task alone refines a class-split preset.
            match options.benchmark.map(|p| p.scenario()) {
                Some(Scenario::ClassSplit { .. }) => Some(ScenarioArg::ClassSplit),
                _ => bail!(
                    "invalid value for --classes-per-task: it needs --scenario class-split or a class-split benchmark"
                ),
            }
        }
        other => other,
    };
    if class_options && scenario != Some(ScenarioArg::ClassSplit) {
        bail!("invalid value for --classes-per-task: it applies only to --scenario class-split");
    }
    Ok(scenario.map(|s| match s {
        ScenarioArg::Permutations => Scenario::Permutations,
        ScenarioArg::Rotations => Scenario::Rotations,
        ScenarioArg::ClassSplit => Scenario::ClassSplit {
            classes_per_task: options.classes_per_task,
            order: class_order.unwrap_or_default(),
        },
        ScenarioArg::Given => Scenario::Given,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_take_a_number_or_all() {
        assert_eq!("12".parse::<Samples>().unwrap().count(), Some(12));
        assert_eq!("all".parse::<Samples>().unwrap().count(), None);
        assert!("some".parse::<Samples>().is_err());
        let o: Options = toml::from_str("samples-per-task = \"all\"").unwrap();
        assert_eq!(o.samples_per_task, Some(Samples::of(None)));
        let o: Options = toml::from_str("samples-per-task = 7").unwrap();
        assert_eq!(o.samples_per_task, Some(Samples::Count(7)));
    }

    #[test]
    fn flags_override_a_file_and_round_trip_through_flags() {
        let file: Options = toml::from_str(
            "benchmark = \"mnist-split\"\nmethod = \"ewc\"\nlr = 0.5\nseed = 3\nshuffle-tasks = true\n",
        )
        .unwrap();
        let flags = Options {
            seed: Some(4),
            ..Options::default()
        };
        let merged = file.overlaid(&flags).unwrap();
        assert_eq!(merged.seed, Some(4));
        assert_eq!(merged.lr, Some(0.5));
        assert_eq!(merged.benchmark, Some(Preset::MnistSplit));
        assert_eq!(
            merged.to_args(),
            [
                "--benchmark",
                "mnist-split",
                "--method",
                "ewc",
                "--lr",
                "0.5",
                "--seed",
                "4",
                "--shuffle-tasks",
                "true"
            ]
        );
        let text = merged.to_toml().unwrap();
        let back: Options = toml::from_str(&text).unwrap();
        assert_eq!(back, merged);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_line() {
        let path = std::path::Path::new("x.toml");
        for (text, expected) in [
            (
                "seed = 1\nlearning-rate = 0.1\n",
                "x.toml line 2: unknown field `learning-rate`",
            ),
            ("seed = 1\n\nlr = \"fast\"\n", "x.toml line 3:"),
            ("tasks = -3\n", "x.toml line 1:"),
        ] {
            let err = toml::from_str::<Options>(text).unwrap_err();
            let line = toml_error(path, text, &err).to_string();
            assert!(line.starts_with(expected), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
