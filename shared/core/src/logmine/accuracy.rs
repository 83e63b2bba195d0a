//! Grouping accuracy, the standard measure of a log parser on Loghub.

use std::collections::HashMap;
use std::hash::Hash;

/// Grouping accuracy (GA) of `predicted` group labels against `truth` labels, one per line.
///
/// A line counts as correct when the set of lines the prediction put in its group is
/// exactly the set of lines sharing its true label (Zhu et al., ICSE-SEIP 2019); GA is the
/// share of correct lines. `None` when the slices differ in length or are empty.
pub fn grouping_accuracy<P, T>(predicted: &[P], truth: &[T]) -> Option<f64>
where
    P: Eq + Hash,
    T: Eq + Hash,
{
    if predicted.len() != truth.len() || predicted.is_empty() {
        return None;
    }
    let mut predicted_size: HashMap<&P, usize> = HashMap::new();
    for p in predicted {
        *predicted_size.entry(p).or_default() += 1;
    }
    // Per true group: its size, and the one predicted group all its lines share (if any).
    let mut true_groups: HashMap<&T, (usize, Option<&P>, bool)> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        let entry = true_groups.entry(t).or_insert((0, Some(p), true));
        entry.0 += 1;
        if entry.1 != Some(p) {
            entry.2 = false;
        }
    }
    let correct: usize = true_groups
        .values()
        .filter(|(size, p, one)| *one && p.is_some_and(|p| predicted_size[p] == *size))
        .map(|(size, _, _)| size)
        .sum();
    Some(correct as f64 / predicted.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ga(predicted: &[u32], truth: &[&str]) -> f64 {
        grouping_accuracy(predicted, truth).expect("same length, not empty")
    }

    #[test]
    fn a_perfect_grouping_scores_one_whatever_the_labels() {
        assert_eq!(ga(&[7, 7, 3, 9], &["a", "a", "b", "c"]), 1.0);
    }

    #[test]
    fn a_predicted_group_that_is_a_strict_superset_is_wrong_for_all_its_lines() {
        // GIVEN truth {0,1} {2} {3} and a prediction that merges {0,1,2}
        // THEN only line 3 is right: {0,1} is inside the right group but not equal to it,
        // and so is {2}.
        assert_eq!(ga(&[1, 1, 1, 2], &["a", "a", "b", "c"]), 0.25);
    }

    #[test]
    fn a_split_group_is_wrong_for_all_its_lines() {
        // Truth {0,1,2} predicted as {0,1} {2}: a subset is as wrong as a superset.
        assert_eq!(ga(&[1, 1, 2, 3], &["a", "a", "a", "b"]), 0.25);
    }

    #[test]
    fn one_stray_line_spoils_a_large_group() {
        // 8 lines of "a" and 1 of "b" predicted together: nothing is right.
        let mut truth = vec!["a"; 8];
        truth.push("b");
        assert_eq!(ga(&[0; 9], &truth), 0.0);
    }

    #[test]
    fn a_group_equal_in_size_but_not_in_members_is_wrong() {
        // Truth {0,1} {2,3}; predicted {0,2} {1,3}: same sizes, different sets.
        assert_eq!(ga(&[1, 2, 1, 2], &["a", "a", "b", "b"]), 0.0);
    }

    #[test]
    fn singletons_count_when_alone() {
        assert_eq!(ga(&[1, 2, 3], &["x", "y", "z"]), 1.0);
        assert!((ga(&[1, 2, 2], &["x", "y", "z"]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn mismatched_or_empty_input_has_no_accuracy() {
        assert_eq!(grouping_accuracy::<u32, u32>(&[], &[]), None);
        assert_eq!(grouping_accuracy(&[1, 2], &[1]), None);
    }
}
