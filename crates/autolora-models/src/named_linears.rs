//! Module paths of the linear layers in a stack of identical transformer blocks
//! (`{stack}.{n}.{suffix}`: `h.0.attn.c_attn`, `encoder.layer.1.attention.self.query`), the
//! names LoRA targets match against and adapters are saved under.

use autolora_core::LoraLinear;

/// The linear layers of one transformer block, in model order, with their path suffixes.
pub(crate) trait BlockLinears<const N: usize> {
    /// Path suffixes inside the block, in the order of [`linears`](Self::linears).
    const SUFFIXES: [&'static str; N];

    /// The layers.
    fn linears(&self) -> [&LoraLinear; N];

    /// Mutable access to the same layers.
    fn linears_mut(&mut self) -> [&mut LoraLinear; N];
}

/// Every linear layer of `blocks`, block by block, named `{stack}.{n}.{suffix}`.
pub(crate) fn stack_linears<'a, const N: usize, B: BlockLinears<N>>(
    stack: &str,
    blocks: &'a [B],
) -> Vec<(String, &'a LoraLinear)> {
    let mut out = Vec::with_capacity(blocks.len() * N);
    for (n, block) in blocks.iter().enumerate() {
        for (suffix, lin) in B::SUFFIXES.iter().zip(block.linears()) {
            out.push((format!("{stack}.{n}.{suffix}"), lin));
        }
    }
    out
}

/// Mutable access to the layers of [`stack_linears`], same names and order.
pub(crate) fn stack_linears_mut<'a, const N: usize, B: BlockLinears<N>>(
    stack: &str,
    blocks: &'a mut [B],
) -> Vec<(String, &'a mut LoraLinear)> {
    let mut out = Vec::with_capacity(blocks.len() * N);
    for (n, block) in blocks.iter_mut().enumerate() {
        for (suffix, lin) in B::SUFFIXES.iter().zip(block.linears_mut()) {
            out.push((format!("{stack}.{n}.{suffix}"), lin));
        }
    }
    out
}
