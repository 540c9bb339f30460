//! autolora-core used from outside its workspace: a frozen layer `y = W x + b` with a fresh
//! LoRA adapter attached (`B = 0`, so the output is unchanged) computes `W x + b` exactly.

use autolora_core::{Adapter, LoraConfig, LoraLinear};
use tch::{Device, Tensor};

fn main() -> autolora_core::Result<()> {
    let weight = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let bias = Tensor::from_slice(&[0.5f32, -0.5]);
    let mut layer = LoraLinear::new(weight, Some(bias))?;
    let adapter = Adapter::new(2, 2, &LoraConfig::default(), None, Device::Cpu)?;
    layer.attach(adapter)?;
    let x = Tensor::from_slice(&[1.0f32, 1.0]).reshape([1, 2]);
    let y = Vec::<f32>::try_from(layer.forward_t(&x, false).flatten(0, -1)).expect("f32 output");
    assert_eq!(y, [3.5, 6.5]);
    println!("autolora-core from a downstream crate: y = {y:?}");
    Ok(())
}
