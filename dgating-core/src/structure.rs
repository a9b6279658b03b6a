//! [`Dim`] and [`Structure`]: what of a model can shrink, and every tensor slice that goes
//! with it.
//!
//! A *dim* is anything that can shrink — the input features, a hidden width, a conv's output
//! channels, the stream channels of a residual stage, the heads of block `l`. Entry `i` of a
//! dim owns, in every tensor coupled to it, the slab `[i*block, (i+1)*block)` along one axis
//! (a head is a block of `head_dim` rows; a channel feeding a flatten → linear is a block of
//! `H·W` columns). Some of those slices form the dim's *groups* (what a gate set penalizes:
//! the rows and bias entries that produce a hidden neuron, the column that reads an input
//! feature); the others only go with them (the next layer's column). Removing entry `i`
//! removes all of them.
//!
//! For an MLP `x → layers.0 → relu → layers.1`, hidden neurons as groups:
//!
//! | dim | tensor | axis | block | group |
//! |---|---|---|---|---|
//! | `inputs` | `layers.0.weight` | 1 | 1 | no |
//! | `hidden.0` | `layers.0.weight` | 0 | 1 | yes |
//! |            | `layers.0.bias`   | 0 | 1 | yes |
//! |            | `layers.1.weight` | 1 | 1 | no |
//! | `outputs` | `layers.1.weight`, `layers.1.bias` | 0 | 1 | no (not removable) |
//!
//! A [`Structure`] is validated once: a tensor axis belongs to at most one dim, every slab
//! divides its axis, and a tensor has one shape wherever it is named.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{GroupLayout, GroupMember};

/// One tensor axis coupled to a [`Dim`]: entry `i` is `[i*block, (i+1)*block)` along `axis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Tensor key, e.g. `layers.1.weight`.
    pub tensor: String,
    /// Full shape of the tensor.
    pub shape: Vec<usize>,
    /// The axis cut by the dim.
    pub axis: usize,
    /// Indices along `axis` per entry of the dim.
    pub block: usize,
    /// Whether this slice is part of the dim's groups (penalized, gated), or only goes with
    /// them.
    pub group: bool,
}

impl Slice {
    /// A slice of one index per entry.
    pub fn new(tensor: impl Into<String>, shape: impl Into<Vec<usize>>, axis: usize, group: bool) -> Self {
        Self { tensor: tensor.into(), shape: shape.into(), axis, block: 1, group }
    }

    /// The same slice with `block` indices per entry.
    pub fn with_block(mut self, block: usize) -> Self {
        self.block = block;
        self
    }

    /// The indices along `axis` kept when the dim keeps the entries `kept` (ascending).
    pub fn kept_indices(&self, kept: &[usize]) -> Vec<usize> {
        kept.iter().flat_map(|&i| i * self.block..(i + 1) * self.block).collect()
    }

    fn member(&self) -> GroupMember {
        GroupMember::new(self.tensor.clone(), self.shape.clone(), self.axis, self.block)
    }
}

/// Something that can shrink: its entries and every tensor slice coupled to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dim {
    /// Name, unique in its structure (`inputs`, `hidden.0`, `stream`, `blocks.2.heads`).
    pub name: String,
    /// Number of entries.
    pub size: usize,
    /// Whether entries may be removed (a model's outputs may not).
    pub removable: bool,
    /// Every coupled slice.
    pub slices: Vec<Slice>,
    /// Whether the model still works with *no* entry left (size 0): a transformer block whose
    /// heads are all removed keeps its residual path and the output projection's bias. Plans
    /// may then remove every entry; its tensors get a zero-length axis.
    #[serde(default)]
    pub emptiable: bool,
}

impl Dim {
    /// A dim of `size` entries with its slices.
    pub fn new(name: impl Into<String>, size: usize, removable: bool, slices: Vec<Slice>) -> Self {
        Self { name: name.into(), size, removable, slices, emptiable: false }
    }

    /// The same dim, allowed to lose every entry ([`Dim::emptiable`]; needs `removable`).
    pub fn emptiable(mut self) -> Self {
        self.emptiable = true;
        self
    }

    /// The layout of the dim's groups (its `group` slices, in order); `None` when it has none
    /// (or no entries left).
    pub fn group_layout(&self) -> Result<Option<GroupLayout>> {
        let members: Vec<GroupMember> = self.slices.iter().filter(|s| s.group).map(Slice::member).collect();
        if members.is_empty() || self.size == 0 {
            return Ok(None);
        }
        GroupLayout::new(self.size, members).map(Some)
    }
}

/// The validated dims of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawStructure", into = "RawStructure")]
pub struct Structure {
    dims: Vec<Dim>,
}

#[derive(Serialize, Deserialize)]
struct RawStructure {
    dims: Vec<Dim>,
}

impl TryFrom<RawStructure> for Structure {
    type Error = Error;
    fn try_from(raw: RawStructure) -> Result<Self> {
        Structure::new(raw.dims)
    }
}

impl From<Structure> for RawStructure {
    fn from(s: Structure) -> Self {
        RawStructure { dims: s.dims }
    }
}

impl Structure {
    /// Validates `dims`: unique names, sizes `>= 1` (`>= 0` for an emptiable dim), every slice's axis in range and of length
    /// `size · block`, one shape per tensor, no tensor axis claimed twice, groups only on
    /// removable dims.
    pub fn new(dims: Vec<Dim>) -> Result<Self> {
        let bad = |name: &str, reason: String| Error::InvalidStructure { dim: name.to_string(), reason };
        let mut shapes: BTreeMap<&str, &[usize]> = BTreeMap::new();
        let mut claimed: BTreeMap<(&str, usize), &str> = BTreeMap::new();
        for (k, d) in dims.iter().enumerate() {
            if dims[..k].iter().any(|e| e.name == d.name) {
                return Err(bad(&d.name, "dim name used twice".into()));
            }
            if d.size == 0 && !d.emptiable {
                return Err(bad(&d.name, "size 0".into()));
            }
            if d.emptiable && !d.removable {
                return Err(bad(&d.name, "a dim that cannot be removed cannot be emptied".into()));
            }
            if !d.removable && d.slices.iter().any(|s| s.group) {
                return Err(bad(&d.name, "a dim that cannot be removed has no groups".into()));
            }
            for s in &d.slices {
                let at = |r: String| bad(&d.name, format!("`{}`: {r}", s.tensor));
                if s.axis >= s.shape.len() {
                    return Err(at(format!("axis {} out of range for shape {:?}", s.axis, s.shape)));
                }
                if s.block == 0 || s.shape[s.axis] != d.size * s.block {
                    return Err(at(format!(
                        "axis {} has {}, which is not {} entries of block {}",
                        s.axis, s.shape[s.axis], d.size, s.block
                    )));
                }
                if let Some(shape) = shapes.insert(&s.tensor, &s.shape)
                    && shape != s.shape.as_slice()
                {
                    return Err(at(format!("shape {:?} here, {shape:?} elsewhere", s.shape)));
                }
                if let Some(other) = claimed.insert((&s.tensor, s.axis), &d.name) {
                    return Err(at(format!("axis {} is claimed by `{other}` too", s.axis)));
                }
            }
        }
        Ok(Self { dims })
    }

    /// The dims, in model order.
    pub fn dims(&self) -> &[Dim] {
        &self.dims
    }

    /// The dim called `name`.
    pub fn dim(&self, name: &str) -> Option<&Dim> {
        self.dims.iter().find(|d| d.name == name)
    }

    /// Every tensor named by a slice, with its full shape, sorted by key.
    pub fn tensors(&self) -> BTreeMap<String, Vec<usize>> {
        self.dims.iter().flat_map(|d| &d.slices).map(|s| (s.tensor.clone(), s.shape.clone())).collect()
    }

    /// Sizes by dim name.
    pub fn sizes(&self) -> BTreeMap<String, usize> {
        self.dims.iter().map(|d| (d.name.clone(), d.size)).collect()
    }

    /// The shape of every tensor after each dim keeps only the entries its `keep` mask (by dim
    /// name; absent = all kept) keeps.
    pub fn shapes_after(&self, keep: &BTreeMap<String, Vec<bool>>) -> Result<BTreeMap<String, Vec<usize>>> {
        let mut shapes = self.tensors();
        for d in &self.dims {
            let Some(mask) = keep.get(&d.name) else { continue };
            if mask.len() != d.size {
                return Err(Error::LengthMismatch {
                    context: format!("keep-mask of dim `{}`", d.name),
                    expected: d.size,
                    actual: mask.len(),
                });
            }
            let kept = mask.iter().filter(|&&k| k).count();
            for s in &d.slices {
                if let Some(shape) = shapes.get_mut(&s.tensor) {
                    shape[s.axis] = kept * s.block;
                }
            }
        }
        Ok(shapes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp(hidden: usize) -> Vec<Dim> {
        vec![
            Dim::new("inputs", 3, true, vec![Slice::new("l0.w", [hidden, 3], 1, false)]),
            Dim::new(
                "hidden",
                hidden,
                true,
                vec![
                    Slice::new("l0.w", [hidden, 3], 0, true),
                    Slice::new("l0.b", [hidden], 0, true),
                    Slice::new("l1.w", [2, hidden], 1, false),
                ],
            ),
            Dim::new("outputs", 2, false, vec![Slice::new("l1.w", [2, hidden], 0, false)]),
        ]
    }

    #[test]
    fn a_valid_structure_has_group_layouts_and_shrinks() {
        let s = Structure::new(mlp(4)).unwrap();
        let layout = s.dim("hidden").unwrap().group_layout().unwrap().unwrap();
        assert_eq!((layout.num_groups(), layout.members().len()), (4, 2));
        assert!(s.dim("inputs").unwrap().group_layout().unwrap().is_none());
        let keep = BTreeMap::from([("hidden".to_string(), vec![true, false, false, true])]);
        let after = s.shapes_after(&keep).unwrap();
        assert_eq!(after["l0.w"], [2, 3]);
        assert_eq!(after["l0.b"], [2]);
        assert_eq!(after["l1.w"], [2, 2]);
        let bad = BTreeMap::from([("hidden".to_string(), vec![true])]);
        assert!(s.shapes_after(&bad).is_err());
    }

    #[test]
    fn an_axis_claimed_twice_is_rejected() {
        let mut dims = mlp(4);
        dims[0].slices.push(Slice::new("l0.w", [4, 3], 0, false).with_block(1));
        dims[0].slices[1].shape = vec![4, 3];
        // `inputs` (3 entries) cannot own axis 0 of length 4 ...
        assert!(Structure::new(dims.clone()).is_err());
        // ... and with a matching size the axis is still `hidden`'s.
        dims[0].size = 4;
        dims[0].slices = vec![Slice::new("l0.w", [4, 3], 0, false)];
        let err = Structure::new(dims).unwrap_err().to_string();
        assert!(err.contains("claimed by `inputs`"), "{err}");
    }

    #[test]
    fn blocks_must_divide_and_shapes_must_agree() {
        let mut dims = mlp(4);
        dims[1].slices[2] = Slice::new("l1.w", [2, 4], 1, false).with_block(3);
        assert!(Structure::new(dims).is_err());
        let mut dims = mlp(4);
        dims[2].slices[0].shape = vec![2, 5];
        assert!(Structure::new(dims).is_err());
        let mut dims = mlp(4);
        dims[2].slices[0].group = true;
        assert!(Structure::new(dims).is_err(), "outputs cannot be groups");
        let mut dims = mlp(4);
        dims[2].name = "hidden".into();
        assert!(Structure::new(dims).is_err(), "duplicate names");
        let mut dims = mlp(4);
        dims[1].size = 0;
        dims[1].slices.iter_mut().for_each(|s| s.shape[s.axis] = 0);
        dims[0].slices[0].shape[0] = 0;
        dims[2].slices[0].shape[1] = 0;
        let err = Structure::new(dims.clone()).unwrap_err().to_string();
        assert!(err.contains("size 0"), "size 0 needs an emptiable dim: {err}");
        dims[1].emptiable = true;
        let s = Structure::new(dims.clone()).unwrap();
        assert!(s.dim("hidden").unwrap().group_layout().unwrap().is_none());
        dims[2] = dims[2].clone().emptiable();
        assert!(Structure::new(dims).is_err(), "outputs cannot be emptied");
        // Blocks: 2 heads of 3 rows.
        let head = Dim::new("heads", 2, true, vec![Slice::new("q", [6, 4], 0, true).with_block(3)]);
        let s = Structure::new(vec![head]).unwrap();
        assert_eq!(s.dims()[0].slices[0].kept_indices(&[1]), vec![3, 4, 5]);
    }
}
