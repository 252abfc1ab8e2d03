//! Memory budgets: work items (tensors to rewire or to compare) run in
//! batches whose estimated memory fits a budget, so that peak memory follows
//! the largest item rather than the whole model.

/// Memory the items processed at the same time may use together, unless
/// told otherwise: 1 GiB.
pub const DEFAULT_MAX_MEMORY: u64 = 1 << 30;

/// Groups items by their estimated memory `costs`, largest first (ties in
/// index order), into batches whose costs together fit `budget`; an item
/// larger than the budget gets a batch of its own. Items of a batch run in
/// parallel, batches one after the other; the last item of a batch is a
/// small one, which keeps the cores busy to its end.
pub fn batches(costs: &[u64], budget: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut used = 0u64;
    for i in order {
        match out.last_mut() {
            Some(batch) if used.saturating_add(costs[i]) <= budget => {
                batch.push(i);
                used += costs[i];
            }
            _ => {
                out.push(vec![i]);
                used = costs[i];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn largest_first_within_the_budget() {
        assert_eq!(
            batches(&[10, 50, 30, 60, 5], 70),
            vec![vec![3], vec![1], vec![2, 0, 4]]
        );
        // Larger than the budget: alone.
        assert_eq!(batches(&[100, 1], 10), vec![vec![0], vec![1]]);
        assert!(batches(&[], 10).is_empty());
    }
}
