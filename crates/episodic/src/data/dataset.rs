//! A data set: training and test examples of one shape, with their labels and, when the file
//! states them, their tasks. Loaders (IDX, CIFAR, NumPy) make one; a [`super::Scenario`] cuts it
//! into tasks.

use std::fmt;

use crate::error::{Error, Result};

/// The most classes a data set may have (each is an output of every network): a guard
/// against a stray huge label that would make the output layer exhaust memory.
pub const MAX_CLASSES: usize = 1 << 16;

/// Shape of one example: channels x height x width (a flat feature vector is 1 x 1 x D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Channels (1 for grey images, 3 for colour).
    pub channels: usize,
    /// Rows per channel.
    pub height: usize,
    /// Columns per row.
    pub width: usize,
}

impl Shape {
    /// A flat vector of `d` features.
    pub fn flat(d: usize) -> Self {
        Self {
            channels: 1,
            height: 1,
            width: d,
        }
    }

    /// Pixels per channel (height x width).
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Features per example (channels x height x width), or `None` if that overflows.
    pub fn checked_features(&self) -> Option<usize> {
        self.channels
            .checked_mul(self.height)?
            .checked_mul(self.width)
    }

    /// Features per example (channels x height x width).
    pub fn features(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the images are square (rotations need them to be).
    pub fn is_square(&self) -> bool {
        self.height == self.width
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// The examples' features, row-major, channel-major inside a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// 8-bit levels, scaled to [0, 1] (divided by 255) when they reach a model.
    Bytes(Vec<u8>),
    /// Features used as they are (finite).
    Floats(Vec<f32>),
}

impl Inputs {
    /// Number of stored values.
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(v) => v.len(),
            Self::Floats(v) => v.len(),
        }
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fraction of the values that are zero (0 for an empty set).
    pub fn zero_fraction(&self) -> f64 {
        let zeros = match self {
            Self::Bytes(v) => v.iter().filter(|&&x| x == 0).count(),
            Self::Floats(v) => v.iter().filter(|&&x| x == 0.0).count(),
        };
        if self.is_empty() {
            0.0
        } else {
            zeros as f64 / self.len() as f64
        }
    }
}

/// One split (train or test): inputs, labels and, optionally, a task id per example.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `labels.len()` examples of `shape.features()` values each.
    pub inputs: Inputs,
    /// Class of each example, below the data set's number of classes.
    pub labels: Vec<u32>,
    /// Task of each example, when the data states it (scenario `given`).
    pub tasks: Option<Vec<u32>>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Training and test examples of one shape, with their classes and provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    name: String,
    shape: Shape,
    classes: usize,
    class_names: Option<Vec<String>>,
    source: String,
    train: Split,
    test: Split,
}

impl Dataset {
    /// Checks and assembles a data set: `name` names it in messages and results, `source` says
    /// where it came from (a path, a URL). Refuses inputs whose length is not a whole number of
    /// examples of `shape`, labels at or beyond `classes`, non-finite floats, class names that
    /// are not one per class, and task ids given for one split but not the other.
    pub fn new(
        name: impl Into<String>,
        shape: Shape,
        classes: usize,
        class_names: Option<Vec<String>>,
        source: impl Into<String>,
        train: Split,
        test: Split,
    ) -> Result<Self> {
        let name = name.into();
        let invalid = |reason: String| Error::Dataset {
            name: name.clone(),
            reason,
        };
        let features = shape
            .checked_features()
            .filter(|&d| d > 0)
            .ok_or_else(|| invalid(format!("an example of shape {shape} has no features")))?;
        if classes == 0 {
            return Err(invalid("it has no classes".into()));
        }
        if classes > MAX_CLASSES {
            return Err(invalid(format!(
                "{classes} classes, more than the {MAX_CLASSES} accepted"
            )));
        }
        if let Some(names) = &class_names {
            if names.len() != classes {
                return Err(invalid(format!(
                    "{} class names for {classes} classes",
                    names.len()
                )));
            }
        }
        if train.tasks.is_some() != test.tasks.is_some() {
            return Err(invalid(
                "task ids are given for one split but not the other".into(),
            ));
        }
        for (which, split) in [("training", &train), ("test", &test)] {
            let expected = split.len().checked_mul(features);
            if expected != Some(split.inputs.len()) {
                return Err(invalid(format!(
                    "the {which} split has {} values for {} examples of {features} features",
                    split.inputs.len(),
                    split.len()
                )));
            }
            if let Some(&label) = split.labels.iter().find(|&&y| y as usize >= classes) {
                return Err(invalid(format!(
                    "{which} label {label} is out of range for {classes} classes"
                )));
            }
            if let Inputs::Floats(values) = &split.inputs {
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(invalid(format!(
                        "{which} example {} has a non-finite value ({})",
                        i / features,
                        values[i]
                    )));
                }
            }
            if let Some(tasks) = &split.tasks {
                if tasks.len() != split.len() {
                    return Err(invalid(format!(
                        "{} {which} task ids for {} examples",
                        tasks.len(),
                        split.len()
                    )));
                }
            }
        }
        if train.is_empty() {
            return Err(invalid("the training split is empty".into()));
        }
        Ok(Self {
            name,
            shape,
            classes,
            class_names,
            source: source.into(),
            train,
            test,
        })
    }

    /// The data set's name (e.g. `mnist`, `cifar100`, a file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shape of one example.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of classes; labels lie in `0..classes`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The classes' names, when the data set has them.
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Where the data came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The training split.
    pub fn train(&self) -> &Split {
        &self.train
    }

    /// The test split.
    pub fn test(&self) -> &Split {
        &self.test
    }

    /// Whether the examples state their tasks.
    pub fn has_tasks(&self) -> bool {
        self.train.tasks.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize, d: usize) -> Split {
        Split {
            inputs: Inputs::Bytes(vec![1; n * d]),
            labels: (0..n as u32).map(|i| i % 3).collect(),
            tasks: None,
        }
    }

    #[test]
    fn accepts_a_consistent_data_set() {
        let shape = Shape {
            channels: 3,
            height: 2,
            width: 2,
        };
        let d = Dataset::new("t", shape, 3, None, "here", split(4, 12), split(2, 12)).unwrap();
        assert_eq!(d.shape().features(), 12);
        assert_eq!(d.train().len(), 4);
        assert!(!d.has_tasks());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let shape = Shape::flat(5);
        let bad_len = Dataset::new("t", shape, 3, None, "", split(4, 4), split(2, 5));
        assert!(bad_len.unwrap_err().to_string().contains("values for 4"));
        let few_classes = Dataset::new("t", shape, 2, None, "", split(4, 5), split(2, 5));
        assert!(few_classes
            .unwrap_err()
            .to_string()
            .contains("label 2 is out of range"));
        let mut nan = split(2, 5);
        nan.inputs = Inputs::Floats(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN, 0.0, 0.0, 0.0]);
        let err = Dataset::new("t", shape, 3, None, "", nan, split(2, 5)).unwrap_err();
        assert!(
            err.to_string().contains("example 1 has a non-finite"),
            "{err}"
        );
        let mut tasks = split(4, 5);
        tasks.tasks = Some(vec![0; 4]);
        let err = Dataset::new("t", shape, 3, None, "", tasks, split(2, 5)).unwrap_err();
        assert!(err.to_string().contains("one split but not the other"));
        let names = Some(vec!["a".to_string()]);
        let err = Dataset::new("t", shape, 3, names, "", split(4, 5), split(2, 5)).unwrap_err();
        assert!(err.to_string().contains("1 class names"));
        let empty = Dataset::new("t", Shape::flat(0), 3, None, "", split(0, 0), split(0, 0));
        assert!(empty.is_err());
        // A label of 4294967295 would make a network of 2^32 outputs.
        let huge = Dataset::new("t", shape, 1 << 32, None, "", split(4, 5), split(2, 5));
        assert!(huge.unwrap_err().to_string().contains("65536 accepted"));
    }
}
