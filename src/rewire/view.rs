//! The matrix view of a tensor (docs/algorithm.md section 1): which
//! element of storage is at row i, column j, for a weight of any rank. A
//! walk over storage indices rather than an index array, so that nothing
//! as large as the tensor is built; and a view that is the storage matrix
//! transposed (a MatMul weight stored as [K, N]) is recognised, so that it
//! can be rewired in the layout it is stored in.

/// The storage index of each element of a matrix view, row-major: the view
/// takes storage axis `axes[0]` as rows and the other axes, in the order
/// given, as columns. An iterator, so that no index array as large as the
/// tensor is ever needed.
#[derive(Clone)]
pub(crate) struct ViewIndices {
    numel: u64,
    done: u64,
    /// Per view axis: extent and storage stride. Empty for the identity.
    axes: Vec<(u64, u64)>,
    counter: Vec<u64>,
    offset: u64,
}

impl ViewIndices {
    /// The view of a tensor of shape `dims` that takes `axes` (a
    /// permutation of the storage axes) in that order.
    pub(crate) fn new(dims: &[u64], axes: &[usize]) -> Self {
        let numel: u64 = dims.iter().product();
        assert!(numel <= u32::MAX as u64, "tensor too large for u32 indices");
        let identity = axes.iter().enumerate().all(|(i, &a)| i == a);
        let mut view = Vec::new();
        if !identity {
            let mut stride = vec![0u64; dims.len()];
            let mut s = 1;
            for a in (0..dims.len()).rev() {
                stride[a] = s;
                s *= dims[a];
            }
            view = axes.iter().map(|&a| (dims[a], stride[a])).collect();
        }
        ViewIndices {
            numel,
            done: 0,
            counter: vec![0; view.len()],
            axes: view,
            offset: 0,
        }
    }
}

impl ViewIndices {
    /// Whether the view is storage order itself.
    pub(crate) fn is_identity(&self) -> bool {
        self.axes.is_empty()
    }
}

impl Iterator for ViewIndices {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.done == self.numel {
            return None;
        }
        self.done += 1;
        if self.axes.is_empty() {
            return Some(self.done as usize - 1);
        }
        let here = self.offset;
        // Odometer over the view's axes, innermost last.
        for d in (0..self.axes.len()).rev() {
            let (extent, stride) = self.axes[d];
            self.counter[d] += 1;
            self.offset += stride;
            if self.counter[d] < extent {
                break;
            }
            self.offset -= stride * extent;
            self.counter[d] = 0;
        }
        Some(here as usize)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.numel - self.done) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for ViewIndices {}

/// `Some((r, c))` when the view of a tensor of shape `dims` taking `axes`
/// (as for [`ViewIndices`]) is the transpose of its storage order read as
/// an `r x c` matrix: rows from the last axis, columns from the others in
/// order, as for a `[K, N]` MatMul weight.
pub(crate) fn storage_transpose(dims: &[u64], axes: &[usize]) -> Option<(usize, usize)> {
    let n = dims.len();
    let flipped = n >= 2
        && axes.len() == n
        && axes[0] == n - 1
        && axes[1..].iter().enumerate().all(|(i, &a)| a == i);
    flipped.then(|| {
        let c = dims[n - 1] as usize;
        (dims[..n - 1].iter().product::<u64>() as usize, c)
    })
}

/// The storage index of each element of the matrix view of a tensor of
/// shape `dims` that takes storage axis `axes[0]` as rows and the other
/// axes, in the order given, as columns; row-major.
pub fn view_index(dims: &[u64], axes: &[usize]) -> Vec<u32> {
    ViewIndices::new(dims, axes).map(|s| s as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_transposes_are_recognised() {
        // A [K, N] weight read with N as rows.
        assert_eq!(storage_transpose(&[3, 4], &[1, 0]), Some((3, 4)));
        // Rows from the last axis, columns the others in order.
        assert_eq!(storage_transpose(&[2, 3, 4], &[2, 0, 1]), Some((6, 4)));
        for (dims, axes) in [
            (&[3u64, 4][..], &[0usize, 1][..]),
            (&[2, 3, 4], &[2, 1, 0]),
            (&[2, 3, 4], &[1, 0, 2]),
            (&[5], &[0]),
        ] {
            assert_eq!(storage_transpose(dims, axes), None, "{dims:?} {axes:?}");
        }
        // What it claims agrees with the view's own walk.
        let (r, c) = storage_transpose(&[2, 3, 4], &[2, 0, 1]).unwrap();
        let walked: Vec<u32> = view_index(&[2, 3, 4], &[2, 0, 1]);
        let tiled: Vec<u32> = (0..c)
            .flat_map(|j| (0..r).map(move |i| (i * c + j) as u32))
            .collect();
        assert_eq!(walked, tiled);
    }
}
