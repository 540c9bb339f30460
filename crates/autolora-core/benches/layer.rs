//! LoRA layer forward + backward (gradients of A, B and the selection logits) at a few shapes.

use std::hint::black_box;
use std::time::Duration;

use autolora_core::optim::gradients;
use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};

fn layer_forward_backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("lora_layer_forward_backward");
    let opts = (Kind::Float, Device::Cpu);
    // (tokens in the batch, in features, out features); rank 8 as in the paper.
    for (tokens, d_in, d_out) in [(256, 384, 384), (1024, 384, 384), (512, 768, 768)] {
        tch::manual_seed(0);
        let mut layer = LoraLinear::new(Tensor::randn([d_out, d_in], opts), None).unwrap();
        let adapter = Adapter::new(
            d_in,
            d_out,
            &LoraConfig::default(),
            Some(Gate::Softmax),
            Device::Cpu,
        )
        .unwrap();
        let params = [
            adapter.a.tensor(),
            adapter.b.tensor(),
            adapter.gate.as_ref().unwrap().logits.tensor(),
        ];
        layer.attach(adapter).unwrap();
        let x = Tensor::randn([tokens, d_in], opts);
        group.throughput(Throughput::Elements(tokens as u64));
        let id = BenchmarkId::from_parameter(format!("{tokens}x{d_in}->{d_out}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let loss = layer.forward_t(&x, true).square().mean(Kind::Float);
                black_box(gradients(&loss, &params, false).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = layer_forward_backward
}
criterion_main!(benches);
