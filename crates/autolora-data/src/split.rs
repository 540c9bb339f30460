//! The seeded train/validation split used by the rank search.
//!
//! AutoLoRA learns its selection variables on a validation set carved out of the training
//! data. The paper says half of the training set; the authors' code takes 30%, which is the
//! default here ([`DEFAULT_VALIDATION_FRACTION`]); both are one setting away.
//!
//! Classification data are split per class (stratified) so both parts keep the class balance;
//! data whose examples come in groups that share an input (E2E: several references per meaning
//! representation) are split by group, so no input sits on both sides; tagging and regression
//! data are split uniformly. Each part is returned in the original file
//! order, so a split is a pure function of (data, fraction, seed).

use crate::error::{Error, Result};
use crate::rng::{derive_seed, permutation};

/// Fraction of the training set held out for the search's validation loss (the authors' code).
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.3;

/// Settings of a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitConfig {
    /// Fraction of examples that go to validation, in (0, 1).
    pub validation_fraction: f64,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            validation_fraction: DEFAULT_VALIDATION_FRACTION,
            seed: 0,
        }
    }
}

/// Indices of the two parts, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Indices kept for training.
    pub train: Vec<usize>,
    /// Indices held out for validation.
    pub validation: Vec<usize>,
}

fn check(config: &SplitConfig, n: usize) -> Result<()> {
    let f = config.validation_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(Error::invalid(
            "validation fraction",
            "a number strictly between 0 and 1",
            f.to_string(),
        ));
    }
    if n < 2 {
        return Err(Error::invalid(
            "train/validation split",
            "at least 2 examples",
            format!("{n} examples"),
        ));
    }
    Ok(())
}

/// Number of items of `n` that go to validation: rounded, at least 1, at most `n - 1`.
fn held_out(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

/// A uniform split of `n` examples.
pub fn split(n: usize, config: &SplitConfig) -> Result<Split> {
    check(config, n)?;
    let order = permutation(n, config.seed);
    let k = held_out(n, config.validation_fraction);
    let mut validation = order[..k].to_vec();
    let mut train = order[k..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    Ok(Split { train, validation })
}

/// A split that holds out the same fraction of every class (`labels[i]` is example i's class).
/// A class with a single example stays in training.
pub fn stratified_split(labels: &[usize], config: &SplitConfig) -> Result<Split> {
    check(config, labels.len())?;
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &c) in labels.iter().enumerate() {
        members[c].push(i);
    }
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for (class, items) in members.iter().enumerate() {
        if items.len() < 2 {
            train.extend_from_slice(items);
            continue;
        }
        let order = permutation(items.len(), derive_seed(config.seed, class as u64, 0));
        let k = held_out(items.len(), config.validation_fraction);
        validation.extend(order[..k].iter().map(|&j| items[j]));
        train.extend(order[k..].iter().map(|&j| items[j]));
    }
    if validation.is_empty() {
        return Err(Error::invalid(
            "stratified split",
            "at least one class with 2 or more examples",
            "only singleton classes",
        ));
    }
    validation.sort_unstable();
    train.sort_unstable();
    Ok(Split { train, validation })
}

/// A split that keeps groups whole (`groups[i]` is example i's group, e.g. the input it
/// shares with other examples): the given fraction of the groups goes to validation, so no
/// group has examples on both sides.
pub fn grouped_split(groups: &[usize], config: &SplitConfig) -> Result<Split> {
    check(config, groups.len())?;
    let mut distinct: Vec<usize> = groups.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(Error::invalid(
            "grouped train/validation split",
            "at least 2 groups (distinct inputs)",
            format!("{} group", distinct.len()),
        ));
    }
    let order = permutation(distinct.len(), config.seed);
    let k = held_out(distinct.len(), config.validation_fraction);
    let held: std::collections::HashSet<usize> = order[..k].iter().map(|&j| distinct[j]).collect();
    let (validation, train) = (0..groups.len()).partition(|&i| held.contains(&groups[i]));
    Ok(Split { train, validation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_split_is_seeded_disjoint_and_sized() {
        let config = SplitConfig::default();
        let s = split(1000, &config).unwrap();
        assert_eq!(s.validation.len(), 300);
        assert_eq!(s.train.len(), 700);
        assert_eq!(s, split(1000, &config).unwrap());
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let other = split(1000, &SplitConfig { seed: 1, ..config }).unwrap();
        assert_ne!(s, other);
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        // 80 of class 0, 20 of class 1, interleaved.
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 5 == 0)).collect();
        let half = SplitConfig {
            validation_fraction: 0.5,
            seed: 3,
        };
        let s = stratified_split(&labels, &half).unwrap();
        let ones = s.validation.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(s.validation.len(), 50);
        assert_eq!(ones, 10);
    }

    #[test]
    fn grouped_split_keeps_every_group_on_one_side() {
        // 40 inputs with 1 to 4 references each.
        let groups: Vec<usize> = (0..40).flat_map(|g| vec![g; 1 + g % 4]).collect();
        let s = grouped_split(&groups, &SplitConfig::default()).unwrap();
        let held: std::collections::HashSet<usize> =
            s.validation.iter().map(|&i| groups[i]).collect();
        assert_eq!(held.len(), 12, "30% of 40 groups");
        assert!(s.train.iter().all(|&i| !held.contains(&groups[i])));
        assert_eq!(s.train.len() + s.validation.len(), groups.len());
        assert!(grouped_split(&[3, 3, 3], &SplitConfig::default()).is_err());
    }

    #[test]
    fn bad_settings_are_errors() {
        let bad = SplitConfig {
            validation_fraction: 1.0,
            seed: 0,
        };
        assert!(split(10, &bad).is_err());
        assert!(split(1, &SplitConfig::default()).is_err());
    }
}
