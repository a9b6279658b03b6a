//! [`GroupLayout`]: which slices of which tensors form group `j`.
//!
//! A layout says once, as data, how one or more row-major tensors split into `J` groups.
//! Each *member* tensor is cut along one `axis` into `J` consecutive blocks of `block`
//! indices; group `j` of that member is the slab `[j*block, (j+1)*block)` along the axis,
//! all other axes complete. A group's weight vector `w_j` is the concatenation of its slabs
//! in every member, in member order. Examples:
//!
//! | group | member | shape | axis | block |
//! |---|---|---|---|---|
//! | hidden neuron `i` | `fc.weight` | `[out, in]` | 0 | 1 |
//! |                   | `fc.bias`   | `[out]`     | 0 | 1 |
//! | input feature `k` | `fc.weight` | `[out, in]` | 1 | 1 |
//! | conv filter `c`   | `conv.weight` | `[c_out, c_in, kh, kw]` | 0 | 1 |
//! | attention head `h` | `attn.q.weight` | `[d, d]` | 0 | `head_dim` |
//!
//! Every function of the crate that works "per group" goes through [`GroupLayout::spans`].

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::scalar::{Scalar, sum_sq};

/// One tensor taking part in a layout: group `j` is `[j*block, (j+1)*block)` along `axis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// Tensor name (the key it has in checkpoints), used in error messages.
    pub name: String,
    /// Row-major shape of the tensor.
    pub shape: Vec<usize>,
    /// Axis along which the tensor is split into groups.
    pub axis: usize,
    /// Number of consecutive indices along `axis` that belong to one group.
    pub block: usize,
}

impl GroupMember {
    /// A member description; validated when added to a [`GroupLayout`].
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<usize>>, axis: usize, block: usize) -> Self {
        Self { name: name.into(), shape: shape.into(), axis, block }
    }

    /// Number of elements of the whole tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `(outer, axis_len, inner)`: products of the dimensions before, at and after `axis`.
    fn split(&self) -> (usize, usize, usize) {
        let outer = self.shape[..self.axis].iter().product();
        let inner = self.shape[self.axis + 1..].iter().product();
        (outer, self.shape[self.axis], inner)
    }

    /// Elements of one group in this member.
    pub fn group_len(&self) -> usize {
        let (outer, _, inner) = self.split();
        outer * self.block * inner
    }
}

/// `J` groups over one or more member tensors. Always valid: `J >= 1`, every member has
/// `shape[axis] == J * block` and every group is non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLayout", into = "RawLayout")]
pub struct GroupLayout {
    num_groups: usize,
    members: Vec<GroupMember>,
}

#[derive(Serialize, Deserialize)]
struct RawLayout {
    num_groups: usize,
    members: Vec<GroupMember>,
}

impl TryFrom<RawLayout> for GroupLayout {
    type Error = Error;
    fn try_from(raw: RawLayout) -> Result<Self> {
        GroupLayout::new(raw.num_groups, raw.members)
    }
}

impl From<GroupLayout> for RawLayout {
    fn from(l: GroupLayout) -> Self {
        RawLayout { num_groups: l.num_groups, members: l.members }
    }
}

impl GroupLayout {
    /// Builds and validates a layout of `num_groups` groups over `members`.
    pub fn new(num_groups: usize, members: Vec<GroupMember>) -> Result<Self> {
        if members.is_empty() {
            return Err(Error::InvalidLayout {
                member: String::new(),
                reason: "a layout needs at least one member tensor".into(),
            });
        }
        let layout = Self { num_groups, members: Vec::with_capacity(members.len()) };
        members.into_iter().try_fold(layout, Self::with_member)
    }

    /// Adds one more member (e.g. a bias that shares the groups of a weight matrix).
    pub fn with_member(mut self, member: GroupMember) -> Result<Self> {
        let bad = |reason: String| Error::InvalidLayout { member: member.name.clone(), reason };
        if self.num_groups == 0 {
            return Err(bad("a layout needs at least one group (J = 0)".into()));
        }
        if member.axis >= member.shape.len() {
            return Err(bad(format!("axis {} out of range for shape {:?}", member.axis, member.shape)));
        }
        if member.block == 0 {
            return Err(bad("block must be >= 1".into()));
        }
        let along = member.shape[member.axis];
        if along != self.num_groups * member.block {
            return Err(bad(format!(
                "shape {:?} has {along} along axis {}, but {} groups of block {} need {}",
                member.shape,
                member.axis,
                self.num_groups,
                member.block,
                self.num_groups * member.block
            )));
        }
        if member.group_len() == 0 {
            return Err(bad(format!("shape {:?} gives empty groups", member.shape)));
        }
        if self.members.iter().any(|m| m.name == member.name) {
            return Err(bad("duplicate member name".into()));
        }
        self.members.push(member);
        Ok(self)
    }

    /// Each row of a `[rows, cols]` matrix is one group (hidden neurons: rows of `W`).
    pub fn rows(name: impl Into<String>, rows: usize, cols: usize) -> Result<Self> {
        Self::new(rows, vec![GroupMember::new(name, [rows, cols], 0, 1)])
    }

    /// Each column of a `[rows, cols]` matrix is one group (input features: columns of `W`).
    pub fn columns(name: impl Into<String>, rows: usize, cols: usize) -> Result<Self> {
        Self::new(cols, vec![GroupMember::new(name, [rows, cols], 1, 1)])
    }

    /// Consecutive blocks of `block` entries of a vector, one group each.
    pub fn blocks(name: impl Into<String>, num_groups: usize, block: usize) -> Result<Self> {
        Self::new(num_groups, vec![GroupMember::new(name, [num_groups * block], 0, block)])
    }

    /// `J`.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// The member tensors, in the order buffers are passed to every function.
    pub fn members(&self) -> &[GroupMember] {
        &self.members
    }

    /// Number of elements of one group, over all members (`p_j`, equal for every `j`).
    pub fn group_len(&self) -> usize {
        self.members.iter().map(GroupMember::group_len).sum()
    }

    /// The contiguous index ranges of group `group` inside member `member`'s flat buffer.
    ///
    /// # Panics
    /// If `member` or `group` is out of range (a programming error, not bad data).
    pub fn spans(&self, member: usize, group: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        assert!(group < self.num_groups, "group {group} out of range (J = {})", self.num_groups);
        let m = &self.members[member];
        let (outer, along, inner) = m.split();
        let len = m.block * inner;
        let start = group * len;
        (0..outer).map(move |o| {
            let s = o * along * inner + start;
            s..s + len
        })
    }

    /// Checks that `buffers` has one slice per member, each of the member's size.
    pub fn check_buffers<T>(&self, buffers: &[&[T]], context: &str) -> Result<()> {
        check_len(|| format!("{context}: number of member buffers"), self.members.len(), buffers.len())?;
        for (m, b) in self.members.iter().zip(buffers) {
            check_len(|| format!("{context}: buffer for `{}` {:?}", m.name, m.shape), m.numel(), b.len())?;
        }
        Ok(())
    }

    /// Zero-filled buffers, one per member.
    pub fn zeros<T: Scalar>(&self) -> Vec<Vec<T>> {
        self.members.iter().map(|m| vec![T::zero(); m.numel()]).collect()
    }

    /// `||w_j||²` for every group, accumulated in `f64`.
    pub fn group_sq_norms<T: Scalar>(&self, w: &[&[T]]) -> Result<Vec<f64>> {
        self.check_buffers(w, "group norms")?;
        Ok((0..self.num_groups).map(|j| self.group_dot_f64(w, w, j)).collect())
    }

    /// `||w_j||` for every group.
    pub fn group_norms<T: Scalar>(&self, w: &[&[T]]) -> Result<Vec<f64>> {
        Ok(self.group_sq_norms(w)?.into_iter().map(f64::sqrt).collect())
    }

    /// `<a_j, b_j>` for group `j` (buffers must already be checked).
    pub(crate) fn group_dot_f64<T: Scalar>(&self, a: &[&[T]], b: &[&[T]], j: usize) -> f64 {
        let mut acc = 0.0;
        for m in 0..self.members.len() {
            for r in self.spans(m, j) {
                if std::ptr::eq(a[m], b[m]) {
                    acc += sum_sq(&a[m][r]);
                } else {
                    acc += a[m][r.clone()].iter().zip(&b[m][r]).map(|(x, y)| x.f64() * y.f64()).sum::<f64>();
                }
            }
        }
        acc
    }

    /// The elements of group `j`, concatenated over members.
    pub fn gather<T: Scalar>(&self, w: &[&[T]], j: usize) -> Result<Vec<T>> {
        self.check_buffers(w, "gather")?;
        let mut out = Vec::with_capacity(self.group_len());
        for (m, buf) in w.iter().enumerate() {
            for r in self.spans(m, j) {
                out.extend_from_slice(&buf[r]);
            }
        }
        Ok(out)
    }

    /// `out_j = s_j · w_j` for every group `j` (the primitive behind composing, balancing
    /// and proximal steps).
    pub fn scale_groups<T: Scalar>(&self, w: &[&[T]], scales: &[T]) -> Result<Vec<Vec<T>>> {
        self.check_buffers(w, "scale groups")?;
        check_len(|| "scale groups: one scale per group".into(), self.num_groups, scales.len())?;
        let mut out = self.zeros::<T>();
        for (m, o) in out.iter_mut().enumerate() {
            for (j, &s) in scales.iter().enumerate() {
                for r in self.spans(m, j) {
                    for (dst, &src) in o[r.clone()].iter_mut().zip(&w[m][r]) {
                        *dst = src * s;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Borrows a `Vec<Vec<T>>` as the `&[&[T]]` every layout function takes.
pub fn as_slices<T>(bufs: &[Vec<T>]) -> Vec<&[T]> {
    bufs.iter().map(Vec::as_slice).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_and_column_spans() {
        let rows = GroupLayout::rows("w", 3, 4).unwrap();
        assert_eq!(rows.spans(0, 1).collect::<Vec<_>>(), vec![4..8]);
        let cols = GroupLayout::columns("w", 3, 4).unwrap();
        assert_eq!(cols.spans(0, 2).collect::<Vec<_>>(), vec![2..3, 6..7, 10..11]);
        assert_eq!(cols.group_len(), 3);
    }

    #[test]
    fn heads_with_bias_share_groups() {
        // 2 heads of head_dim 3 over a [6, 4] projection plus its [6] bias.
        let l = GroupLayout::new(
            2,
            vec![GroupMember::new("q.weight", [6, 4], 0, 3), GroupMember::new("q.bias", [6], 0, 3)],
        )
        .unwrap();
        assert_eq!(l.spans(0, 1).collect::<Vec<_>>(), vec![12..24]);
        assert_eq!(l.spans(1, 1).collect::<Vec<_>>(), vec![3..6]);
        assert_eq!(l.group_len(), 15);
        let w: Vec<f64> = (0..24).map(f64::from).collect();
        let b = vec![1.0; 6];
        let g = l.gather(&[&w, &b], 1).unwrap();
        assert_eq!(g.len(), 15);
        assert_eq!(g[0], 12.0);
        assert_eq!(g[14], 1.0);
        let n = l.group_sq_norms(&[&w, &b]).unwrap();
        let expect: f64 = (12..24).map(|i| f64::from(i) * f64::from(i)).sum::<f64>() + 3.0;
        assert!((n[1] - expect).abs() < 1e-9);
    }

    #[test]
    fn conv_filter_axis_zero_four_d() {
        let l = GroupLayout::new(2, vec![GroupMember::new("conv", [2, 3, 2, 2], 0, 1)]).unwrap();
        assert_eq!(l.spans(0, 1).collect::<Vec<_>>(), vec![12..24]);
        // input-channel axis of a conv: 3 groups, strided.
        let c = GroupLayout::new(3, vec![GroupMember::new("conv", [2, 3, 2, 2], 1, 1)]).unwrap();
        assert_eq!(c.spans(0, 1).collect::<Vec<_>>(), vec![4..8, 16..20]);
    }

    #[test]
    fn invalid_layouts_are_errors() {
        assert!(GroupLayout::new(0, vec![GroupMember::new("w", [0, 3], 0, 1)]).is_err());
        assert!(GroupLayout::new(3, vec![]).is_err());
        assert!(GroupLayout::new(3, vec![GroupMember::new("w", [4, 3], 0, 1)]).is_err());
        assert!(GroupLayout::new(3, vec![GroupMember::new("w", [3, 3], 2, 1)]).is_err());
        assert!(GroupLayout::new(3, vec![GroupMember::new("w", [3, 0], 0, 1)]).is_err());
        assert!(GroupLayout::new(3, vec![GroupMember::new("w", [3], 0, 0)]).is_err());
        let dup = GroupLayout::rows("w", 3, 2).unwrap().with_member(GroupMember::new("w", [3], 0, 1));
        assert!(dup.is_err());
        let err = GroupLayout::rows("w", 3, 2).unwrap().with_member(GroupMember::new("b", [4], 0, 1)).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
    }

    #[test]
    fn buffer_length_mismatch_is_error() {
        let l = GroupLayout::rows("w", 3, 2).unwrap();
        let short = vec![0.0f32; 5];
        let err = l.group_norms(&[&short]).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { expected: 6, actual: 5, .. }), "{err}");
        assert!(l.group_norms::<f32>(&[]).is_err());
    }

    #[test]
    fn serde_round_trip_validates() {
        let l = GroupLayout::columns("fc.weight", 4, 5).unwrap();
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<GroupLayout>(&s).unwrap(), l);
        let bad = s.replace("\"num_groups\":5", "\"num_groups\":6");
        assert!(serde_json::from_str::<GroupLayout>(&bad).is_err());
    }
}
