//! Rank statistics for checking a predictor against measurements: the Spearman correlation of
//! the accuracy proxy's predicted loss with the measured accuracy drop (`cargo bench --bench
//! proxy`).

/// The rank of every value (1 for the smallest); tied values share the average of the ranks they
/// span, so that a tie never favours one order.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let tie = order[start..]
            .iter()
            .take_while(|&&i| values[i] == values[order[start]])
            .count();
        // Positions start..start + tie hold ranks start + 1 ..= start + tie.
        let average = start as f64 + (tie as f64 + 1.0) / 2.0;
        for &i in &order[start..start + tie] {
            ranks[i] = average;
        }
        start += tie;
    }
    ranks
}

/// Spearman's rank correlation of `x` and `y` (paired): the Pearson correlation of their
/// average ranks. `None` for fewer than two pairs, a length mismatch, or when either side is
/// constant (no ranking to compare).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(
            ranks(&[10.0, 30.0, 20.0, 30.0, 10.0]),
            vec![1.5, 4.5, 3.0, 4.5, 1.5]
        );
        assert!(ranks(&[]).is_empty());
    }

    #[test]
    fn spearman_matches_a_hand_computed_example() {
        // x ranks 1.5, 1.5, 3, 4, 5 (a tie); y ranks 2, 1, 4, 3, 5. Mean rank 3 on both sides:
        // x deviations -1.5 -1.5 0 1 2 (squares sum 9.5), y deviations -1 -2 1 0 2 (sum 10),
        // products 1.5 + 3 + 0 + 0 + 4 = 8.5, so rho = 8.5 / sqrt(9.5 * 10) = 0.872082...
        let rho = spearman(&[1.0, 1.0, 2.0, 3.0, 4.0], &[20.0, 10.0, 40.0, 30.0, 50.0]).unwrap();
        assert!((rho - 8.5 / 95f64.sqrt()).abs() < 1e-12, "{rho}");
        assert!((rho - 0.872_081_599_272_381).abs() < 1e-12);
    }

    #[test]
    fn spearman_sees_only_the_order() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(spearman(&x, &[1.0, 10.0, 100.0, 1000.0]), Some(1.0));
        assert_eq!(spearman(&x, &[9.0, 5.0, 2.0, -7.0]), Some(-1.0));
    }

    #[test]
    fn spearman_is_undefined_without_a_ranking() {
        assert_eq!(spearman(&[1.0], &[2.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[3.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[3.0]), None);
    }
}
