//! Scenarios: how a data set is cut into a stream of tasks.
//!
//! - `permutations`: task t permutes the pixel positions with its own random permutation
//!   (every channel alike; the first task is permuted too), trains on a random subset of the whole
//!   training set and is tested on the whole test set; one head shared by all tasks.
//! - `rotations`: task t rotates every image (every channel alike) counter-clockwise by an
//!   angle drawn in [t * 180 / T, (t + 1) * 180 / T) degrees; square images only.
//! - `class-split`: task t holds its own classes (N per task, consecutive by default or in a
//!   seeded random order) with a head of its own: outputs outside the task's classes are
//!   masked in training and at test.
//! - `given`: the data file states each example's task; one shared head.
//!
//! Every draw comes from the run's seed (the benchmark's random stream).

use std::fmt;
use std::ops::Range;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::transform::PixelMap;
use crate::error::{Error, Result};

/// The order in which a class split assigns classes to tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassOrder {
    /// Classes 0..N to task 0, N..2N to task 1, and so on.
    #[default]
    Consecutive,
    /// The classes shuffled from the run's seed first.
    Random,
}

impl ClassOrder {
    /// The name in configuration files and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Self::Consecutive => "consecutive",
            Self::Random => "random",
        }
    }
}

/// How tasks are made from a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    /// A random pixel permutation per task.
    Permutations,
    /// A rotation per task, by an angle drawn in the task's bin of [0, 180) degrees.
    Rotations,
    /// Disjoint classes per task, a head per task.
    ClassSplit {
        /// Classes per task; `None`: the data set's classes divided equally by the tasks.
        classes_per_task: Option<usize>,
        /// Consecutive or seeded random assignment.
        #[serde(default)]
        order: ClassOrder,
    },
    /// The tasks the data file states, one id per example.
    Given,
}

impl Scenario {
    /// The name on the command line (`--scenario`).
    pub fn id(&self) -> &'static str {
        match self {
            Self::Permutations => "permutations",
            Self::Rotations => "rotations",
            Self::ClassSplit { .. } => "class-split",
            Self::Given => "given",
        }
    }

    /// Whether each task has its own classes and output head (task-incremental).
    pub fn per_task_heads(&self) -> bool {
        matches!(self, Self::ClassSplit { .. })
    }

    /// The number of tasks when none is asked for: 20 for permutations and rotations (the
    /// paper's), the classes divided by the classes per task for a class split, and the
    /// largest stated task id + 1 for given tasks.
    pub fn default_tasks(&self, data: &Dataset) -> Result<usize> {
        match self {
            Self::Permutations | Self::Rotations => Ok(20),
            Self::ClassSplit {
                classes_per_task, ..
            } => match classes_per_task {
                Some(0) => Err(zero_classes_per_task()),
                Some(c) if *c > data.classes() => Err(Error::InvalidOption {
                    option: "--classes-per-task",
                    reason: format!(
                        "{c} classes per task, but {} has {} classes",
                        data.name(),
                        data.classes()
                    ),
                }),
                Some(c) => Ok(data.classes() / c),
                None => Err(Error::InvalidOption {
                    option: "--tasks",
                    reason: "class-split needs --tasks or --classes-per-task".into(),
                }),
            },
            Self::Given => data
                .train()
                .tasks
                .as_ref()
                .and_then(|t| t.iter().max())
                .map(|&m| m as usize + 1)
                .ok_or_else(|| no_task_ids(data)),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

fn no_task_ids(data: &Dataset) -> Error {
    Error::InvalidOption {
        option: "--scenario",
        reason: format!(
            "given needs task ids in the data (task_train, task_test); {} has none",
            data.name()
        ),
    }
}

fn zero_classes_per_task() -> Error {
    Error::InvalidOption {
        option: "--classes-per-task",
        reason: "must be at least 1".into(),
    }
}

/// What identifies a task in a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskDescriptor {
    /// A pixel permutation, by the SHA-256 of its source map.
    Permutation {
        /// Hex SHA-256 of the permutation.
        sha256: String,
    },
    /// A rotation by this many degrees, counter-clockwise.
    Rotation {
        /// The angle drawn for the task.
        degrees: f64,
    },
    /// The task's own classes (class splits), as the data set numbers them.
    Classes {
        /// The classes of the task.
        #[serde(alias = "digits")]
        classes: Vec<u32>,
    },
    /// A task the data file states.
    Given {
        /// The task id in the file.
        id: u32,
    },
}

/// One task as a scenario makes it: a transform of the base data, the examples drawn for it.
#[derive(Debug, Clone)]
pub(crate) struct TaskPlan {
    pub map: PixelMap,
    pub train_indices: Vec<u32>,
    pub test_indices: Option<Vec<u32>>,
    pub head: Range<usize>,
    pub descriptor: TaskDescriptor,
}

/// The size of a stream: tasks and training examples per task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub tasks: usize,
    /// `None`: all of a task's training examples.
    pub samples_per_task: Option<usize>,
}

/// Draws `k` of `pool` without repetition (all of them, in order, for `None`), or refuses.
fn draw(
    pool: &[u32],
    k: Option<usize>,
    what: impl Fn() -> String,
    rng: &mut impl Rng,
) -> Result<Vec<u32>> {
    match k {
        None => Ok(pool.to_vec()),
        Some(k) if k == 0 || k > pool.len() => Err(Error::InvalidOption {
            option: "--samples-per-task",
            reason: format!(
                "must be between 1 and the {} training examples of {}, got {k}",
                pool.len(),
                what()
            ),
        }),
        Some(k) => Ok(rand::seq::index::sample(rng, pool.len(), k)
            .into_iter()
            .map(|i| pool[i])
            .collect()),
    }
}

impl Scenario {
    /// The tasks of this scenario over `data`, drawn from `rng`, and the output index of each
    /// class (class splits in random order renumber the classes so that every task's head
    /// is a contiguous range; `None`: classes keep their numbers).
    pub(crate) fn plan(
        &self,
        data: &Dataset,
        sizes: Sizes,
        rng: &mut impl Rng,
    ) -> Result<(Vec<TaskPlan>, Option<Vec<u32>>)> {
        if sizes.tasks == 0 {
            return Err(Error::InvalidOption {
                option: "--tasks",
                reason: "must be at least 1".into(),
            });
        }
        let shape = data.shape();
        let classes = data.classes();
        match self {
            Self::Permutations | Self::Rotations => {
                if *self == Self::Rotations && !shape.is_square() {
                    return Err(Error::InvalidOption {
                        option: "--scenario",
                        reason: format!(
                            "rotations need square images; {} has {shape}",
                            data.name()
                        ),
                    });
                }
                let available = data.train().len();
                // Indices of the whole training set, the pool every task draws from.
                let all: Vec<u32> = (0..available as u32).collect();
                let mut plans = Vec::new();
                for t in 0..sizes.tasks {
                    let (map, descriptor) = if *self == Self::Rotations {
                        let width = 180.0 / sizes.tasks as f64;
                        let degrees = t as f64 * width + rng.random::<f64>() * width;
                        (
                            PixelMap::rotation(shape.height, degrees),
                            TaskDescriptor::Rotation { degrees },
                        )
                    } else {
                        let map = PixelMap::random_permutation(shape.pixels(), rng);
                        let sha256 = map.digest();
                        (map, TaskDescriptor::Permutation { sha256 })
                    };
                    let train_indices = draw(
                        &all,
                        sizes.samples_per_task,
                        || "the training set".into(),
                        rng,
                    )?;
                    plans.push(TaskPlan {
                        map,
                        train_indices,
                        test_indices: None,
                        head: 0..classes,
                        descriptor,
                    });
                }
                Ok((plans, None))
            }
            Self::ClassSplit {
                classes_per_task,
                order,
            } => {
                let per_task = match classes_per_task {
                    Some(0) => return Err(zero_classes_per_task()),
                    Some(c) => *c,
                    None if classes % sizes.tasks == 0 => classes / sizes.tasks,
                    None => {
                        return Err(Error::InvalidOption {
                            option: "--tasks",
                            reason: format!(
                                "{} tasks do not split the {classes} classes of {} equally; \
                                 give --classes-per-task",
                                sizes.tasks,
                                data.name()
                            ),
                        })
                    }
                };
                let needed = per_task.saturating_mul(sizes.tasks);
                if needed > classes {
                    return Err(Error::InvalidOption {
                        option: "--classes-per-task",
                        reason: format!(
                            "{} tasks of {per_task} classes need {needed} classes; {} has {classes}",
                            sizes.tasks,
                            data.name()
                        ),
                    });
                }
                let mut class_order: Vec<u32> = (0..classes as u32).collect();
                let renumber = if *order == ClassOrder::Random {
                    class_order.shuffle(rng);
                    let mut output = vec![u32::MAX; classes];
                    for (position, &class) in class_order.iter().enumerate() {
                        output[class as usize] = position as u32;
                    }
                    Some(output)
                } else {
                    None
                };
                let of_classes = |labels: &[u32], own: &[u32]| -> Vec<u32> {
                    labels
                        .iter()
                        .enumerate()
                        .filter(|(_, y)| own.contains(y))
                        .map(|(i, _)| i as u32)
                        .collect()
                };
                let mut plans = Vec::new();
                for t in 0..sizes.tasks {
                    let head = t * per_task..(t + 1) * per_task;
                    let own = &class_order[head.clone()];
                    let pool = of_classes(&data.train().labels, own);
                    let train_indices = draw(
                        &pool,
                        sizes.samples_per_task,
                        || format!("task {} (classes {own:?})", t + 1),
                        rng,
                    )?;
                    plans.push(TaskPlan {
                        map: PixelMap::identity(shape.pixels()),
                        train_indices,
                        test_indices: Some(of_classes(&data.test().labels, own)),
                        descriptor: TaskDescriptor::Classes {
                            classes: own.to_vec(),
                        },
                        head,
                    });
                }
                Ok((plans, renumber))
            }
            Self::Given => {
                let (Some(train_tasks), Some(test_tasks)) =
                    (&data.train().tasks, &data.test().tasks)
                else {
                    return Err(no_task_ids(data));
                };
                let stated = self.default_tasks(data)?;
                if sizes.tasks != stated {
                    return Err(Error::InvalidOption {
                        option: "--tasks",
                        reason: format!(
                            "the data of {} states {stated} tasks, got {}",
                            data.name(),
                            sizes.tasks
                        ),
                    });
                }
                if let Some(&id) = test_tasks.iter().find(|&&id| id as usize >= stated) {
                    return Err(Error::InvalidOption {
                        option: "--scenario",
                        reason: format!(
                            "test task id {id} has no training examples (the training ids are 0..{})",
                            stated - 1
                        ),
                    });
                }
                let of_task = |ids: &[u32], t: u32| -> Vec<u32> {
                    ids.iter()
                        .enumerate()
                        .filter(|(_, &id)| id == t)
                        .map(|(i, _)| i as u32)
                        .collect()
                };
                let mut plans = Vec::new();
                for t in 0..stated as u32 {
                    let pool = of_task(train_tasks, t);
                    if pool.is_empty() {
                        return Err(Error::InvalidOption {
                            option: "--scenario",
                            reason: format!(
                                "task id {t} has no training examples (ids must run 0..{})",
                                stated - 1
                            ),
                        });
                    }
                    let train_indices = draw(
                        &pool,
                        sizes.samples_per_task,
                        || format!("task id {t}"),
                        rng,
                    )?;
                    plans.push(TaskPlan {
                        map: PixelMap::identity(shape.pixels()),
                        train_indices,
                        test_indices: Some(of_task(test_tasks, t)),
                        head: 0..classes,
                        descriptor: TaskDescriptor::Given { id: t },
                    });
                }
                Ok((plans, None))
            }
        }
    }
}
