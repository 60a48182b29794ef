//! Pareto utilities shared by the policies and the reports: dominance (plain and constrained),
//! fast non-dominated sorting, crowding distance and hypervolume. All objectives are minimised.

use std::cmp::Ordering;

/// `a` dominates `b`: no worse in every objective and better in one.
pub(crate) fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        better |= x < y;
    }
    better
}

/// Deb's constrained domination: a feasible point beats an infeasible one, the smaller violation
/// wins between infeasible ones, and plain dominance decides between feasible ones.
pub(crate) fn constrained_dominates(a: (&[f64], f64), b: (&[f64], f64)) -> bool {
    match (a.1 > 0.0, b.1 > 0.0) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a.1 < b.1,
        (false, false) => dominates(a.0, b.0),
    }
}

/// Deb et al.'s fast non-dominated sort under constrained domination: the indices of each front,
/// best front first.
pub(crate) fn non_dominated_fronts(objectives: &[Vec<f64>], violations: &[f64]) -> Vec<Vec<usize>> {
    let n = objectives.len();
    let mut dominated_by_me: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut domination_count = vec![0usize; n];
    for i in 0..n {
        for j in (i + 1)..n {
            let (a, b) = (
                (&objectives[i][..], violations[i]),
                (&objectives[j][..], violations[j]),
            );
            if constrained_dominates(a, b) {
                dominated_by_me[i].push(j);
                domination_count[j] += 1;
            } else if constrained_dominates(b, a) {
                dominated_by_me[j].push(i);
                domination_count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| domination_count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by_me[i] {
                domination_count[j] -= 1;
                if domination_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(current);
        current = next;
    }
    fronts
}

/// Crowding distance of each member of `front` (same order): the normalised perimeter of the
/// cuboid its neighbours span in every objective; boundary points get infinity.
// `k` walks the objective columns of row-major points, which an iterator would not make clearer.
#[allow(clippy::needless_range_loop)]
pub(crate) fn crowding_distance(front: &[usize], objectives: &[Vec<f64>]) -> Vec<f64> {
    let n = front.len();
    let mut distance = vec![0.0; n];
    if n == 0 {
        return distance;
    }
    let m = objectives[front[0]].len();
    for k in 0..m {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| objectives[front[a]][k].total_cmp(&objectives[front[b]][k]));
        let (lo, hi) = (
            objectives[front[order[0]]][k],
            objectives[front[order[n - 1]]][k],
        );
        distance[order[0]] = f64::INFINITY;
        distance[order[n - 1]] = f64::INFINITY;
        if hi > lo {
            for w in 1..n.saturating_sub(1) {
                let gap = objectives[front[order[w + 1]]][k] - objectives[front[order[w - 1]]][k];
                distance[order[w]] += gap / (hi - lo);
            }
        }
    }
    distance
}

/// The indices of the points no other point dominates (duplicates kept once).
pub(crate) fn pareto_front(points: &[Vec<f64>]) -> Vec<usize> {
    let mut front: Vec<usize> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let dominated = points.iter().any(|q| dominates(q, p));
        let duplicate = front.iter().any(|&j| points[j] == *p);
        if !dominated && !duplicate {
            front.push(i);
        }
    }
    front
}

/// A set of mutually non-dominated points with a payload, updated one point at a time.
pub(crate) struct Archive<T> {
    members: Vec<(Vec<f64>, T)>,
}

impl<T> Default for Archive<T> {
    fn default() -> Self {
        Archive {
            members: Vec::new(),
        }
    }
}

impl<T> Archive<T> {
    /// Adds `point` unless a member dominates or equals it, dropping the members it dominates.
    pub fn insert(&mut self, point: Vec<f64>, payload: T) -> bool {
        if self
            .members
            .iter()
            .any(|(m, _)| dominates(m, &point) || *m == point)
        {
            return false;
        }
        self.members.retain(|(m, _)| !dominates(&point, m));
        self.members.push((point, payload));
        true
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn into_payloads(self) -> Vec<T> {
        self.members.into_iter().map(|(_, t)| t).collect()
    }
}

/// The volume of the region dominated by `points` and bounded by `reference` (points not
/// strictly better than the reference in every objective contribute nothing). Exact, by slicing
/// along the last objective.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<Vec<f64>> = points
        .iter()
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .cloned()
        .collect();
    volume(inside, reference)
}

/// The hypervolume of each front after normalising every objective by the ideal and nadir
/// points over all `fronts` (so fronts of one problem compare on a common scale), with the
/// reference point at 1.1 in every objective.
pub(crate) fn normalised_hypervolumes(fronts: &[Vec<Vec<f64>>]) -> Vec<f64> {
    let m = fronts.iter().flatten().map(Vec::len).max().unwrap_or(0);
    let all = || fronts.iter().flatten();
    let ideal: Vec<f64> = (0..m)
        .map(|k| all().map(|p| p[k]).fold(f64::INFINITY, f64::min))
        .collect();
    let nadir: Vec<f64> = (0..m)
        .map(|k| all().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let normalise = |p: &Vec<f64>| -> Vec<f64> {
        (0..m)
            .map(|k| {
                if nadir[k] > ideal[k] {
                    (p[k] - ideal[k]) / (nadir[k] - ideal[k])
                } else {
                    0.0
                }
            })
            .collect()
    };
    let reference = vec![1.1; m];
    fronts
        .iter()
        .map(|front| {
            let points: Vec<Vec<f64>> = front.iter().map(normalise).collect();
            hypervolume(&points, &reference)
        })
        .collect()
}

fn volume(mut points: Vec<Vec<f64>>, reference: &[f64]) -> f64 {
    let m = reference.len();
    if points.is_empty() {
        return 0.0;
    }
    if m == 1 {
        let best = points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
        return reference[0] - best;
    }
    // Sweep the last objective from best to worst; between consecutive values, the slice's
    // (m-1)-dimensional volume is that of the points seen so far.
    points.sort_by(|a, b| a[m - 1].partial_cmp(&b[m - 1]).unwrap_or(Ordering::Equal));
    let mut total = 0.0;
    for i in 0..points.len() {
        let upper = if i + 1 < points.len() {
            points[i + 1][m - 1]
        } else {
            reference[m - 1]
        };
        let height = upper - points[i][m - 1];
        if height <= 0.0 {
            continue;
        }
        let slice: Vec<Vec<f64>> = points[..=i].iter().map(|p| p[..m - 1].to_vec()).collect();
        let front: Vec<Vec<f64>> = pareto_front(&slice)
            .into_iter()
            .map(|j| slice[j].clone())
            .collect();
        total += height * volume(front, &reference[..m - 1]);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[[f64; 2]]) -> Vec<Vec<f64>> {
        v.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn dominance_cases() {
        assert!(dominates(&[1.0, 2.0], &[2.0, 2.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[1.0, 3.0], &[2.0, 2.0]));
        // Feasible beats infeasible, smaller violation beats larger.
        assert!(constrained_dominates((&[9.0], 0.0), (&[1.0], 0.5)));
        assert!(constrained_dominates((&[9.0], 0.1), (&[1.0], 0.5)));
    }

    #[test]
    fn fronts_by_hand() {
        // (1,4) (2,2) (4,1) are mutually non-dominated; (3,3) is dominated by (2,2); (5,5) by all.
        let p = pts(&[[3.0, 3.0], [1.0, 4.0], [5.0, 5.0], [2.0, 2.0], [4.0, 1.0]]);
        let fronts = non_dominated_fronts(&p, &[0.0; 5]);
        assert_eq!(fronts, vec![vec![1, 3, 4], vec![0], vec![2]]);
        // With (2,2) infeasible it falls behind every feasible point, and (3,3), which only
        // (2,2) dominated, joins the first front.
        let fronts = non_dominated_fronts(&p, &[0.0, 0.0, 0.0, 0.3, 0.0]);
        assert_eq!(fronts, vec![vec![0, 1, 4], vec![2], vec![3]]);
    }

    #[test]
    fn crowding_by_hand() {
        // Front sorted in objective 0: (1,4) (2,2) (4,1); ranges 3 and 3.
        let p = pts(&[[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]]);
        let d = crowding_distance(&[0, 1, 2], &p);
        assert!(d[0].is_infinite() && d[2].is_infinite());
        // Middle: (4 - 1) / 3 + (4 - 1) / 3 = 2.
        assert!((d[1] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn hypervolume_by_hand() {
        // Reference (5,5): staircase of (1,4) (2,2) (4,1): 4*1 + 3*2 + 1*1... computed as
        // union of boxes: [1,5]x[4,5]=4, [2,5]x[2,4]=6, [4,5]x[1,2]=1 -> 11.
        let p = pts(&[[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0]]);
        assert!((hypervolume(&p, &[5.0, 5.0]) - 11.0).abs() < 1e-12);
        // Single point in 3-D: a box.
        assert!((hypervolume(&[vec![1.0, 2.0, 3.0]], &[2.0, 4.0, 4.0]) - 2.0).abs() < 1e-12);
        // Two boxes in 3-D overlapping: (0,0,1) and (1,1,0) with reference (2,2,2):
        // 2*2*1 + 1*1*2 - 1*1*1 = 5.
        let q = vec![vec![0.0, 0.0, 1.0], vec![1.0, 1.0, 0.0]];
        assert!((hypervolume(&q, &[2.0, 2.0, 2.0]) - 5.0).abs() < 1e-12);
        assert_eq!(hypervolume(&[vec![6.0, 1.0]], &[5.0, 5.0]), 0.0);
    }
}
