//! Shared, swappable parameter slots.
//!
//! A model's layers and the search engine must see the same trainable tensors, and the exact
//! hypergradient must be able to run the model on *non-leaf* weights `w' = step(w, g(a))` that
//! are still connected to the selection variables `a` in the autograd graph. A [`Param`] is a
//! shared slot holding a tensor: layers read it on every forward, the engine may temporarily
//! [`Param::replace`] its content and put the leaf back afterwards. Cloning a `Param` clones the
//! handle, not the tensor.

use std::cell::RefCell;
use std::rc::Rc;

use tch::Tensor;

/// A shared slot holding one parameter tensor. See the module docs.
#[derive(Clone)]
pub struct Param(Rc<RefCell<Tensor>>);

impl Param {
    /// Wraps a tensor. Trainable parameters should be leaves with `requires_grad` set.
    pub fn new(tensor: Tensor) -> Self {
        Param(Rc::new(RefCell::new(tensor)))
    }

    /// The current tensor (a shallow clone: same storage, same autograd identity).
    pub fn tensor(&self) -> Tensor {
        self.0.borrow().shallow_clone()
    }

    /// Puts `tensor` into the slot and returns what was there.
    pub fn replace(&self, tensor: Tensor) -> Tensor {
        self.0.replace(tensor)
    }

    /// The size of the current tensor.
    pub fn size(&self) -> Vec<i64> {
        self.0.borrow().size()
    }

    /// Number of scalar entries.
    pub fn numel(&self) -> i64 {
        self.size().iter().product()
    }

    /// Whether two handles point at the same slot.
    pub fn same_slot(&self, other: &Param) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.borrow();
        f.debug_struct("Param")
            .field("size", &t.size())
            .field("kind", &t.kind())
            .field("requires_grad", &t.requires_grad())
            .finish()
    }
}

/// A named parameter, as models list them (names follow the checkpoint's key layout, e.g.
/// `encoder.layer.0.attention.self.query.lora_A`).
#[derive(Clone, Debug)]
pub struct NamedParam {
    /// Dotted name.
    pub name: String,
    /// The slot.
    pub param: Param,
}

/// Wraps `tensor` as a trainable leaf (`requires_grad` set; kind and device unchanged).
pub fn trainable(tensor: Tensor) -> Param {
    Param::new(tensor.set_requires_grad(true))
}
