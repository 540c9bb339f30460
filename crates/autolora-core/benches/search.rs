//! One bilevel search step per hypergradient mode on a small MLP with two selective LoRA
//! layers, against a plain training step of the same weights.

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use autolora_core::bilevel::{BilevelSearch, FiniteDifferenceForm, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::param::trainable;
use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear, Param};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 64;

struct Mlp {
    layers: Vec<LoraLinear>,
    head: Param,
    inner: Vec<Param>,
    selection: Vec<Param>,
}

impl Mlp {
    /// 128 -> 256 -> 256 -> 4, LoRA rank 8 with softmax selection on both hidden layers.
    fn new() -> Mlp {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let (mut layers, mut inner, mut selection) = (Vec::new(), Vec::new(), Vec::new());
        for (d_in, d_out) in [(128, 256), (256, 256)] {
            let w = Tensor::randn([d_out, d_in], opts) / (d_in as f64).sqrt();
            let mut layer = LoraLinear::new(w, Some(Tensor::zeros([d_out], opts))).unwrap();
            let adapter = Adapter::new(
                d_in,
                d_out,
                &LoraConfig::default(),
                Some(Gate::Softmax),
                Device::Cpu,
            )
            .unwrap();
            inner.extend([adapter.a.clone(), adapter.b.clone()]);
            selection.push(adapter.gate.as_ref().unwrap().logits.clone());
            layer.attach(adapter).unwrap();
            layers.push(layer);
        }
        let head = trainable(Tensor::randn([4, 256], opts) * 0.05);
        inner.push(head.clone());
        Mlp {
            layers,
            head,
            inner,
            selection,
        }
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for layer in &self.layers {
            h = layer.forward_t(&h, true).relu();
        }
        h.linear::<Tensor>(&self.head.tensor(), None)
            .cross_entropy_for_logits(y)
    }
}

fn batch() -> (Tensor, Tensor) {
    let x = Tensor::randn([BATCH, 128], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(4, [BATCH], (Kind::Int64, Device::Cpu));
    (x, y)
}

fn search_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_step_mlp");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mlp = Rc::new(Mlp::new());
    let (x, y) = batch();
    let (xv, yv) = batch();

    let mut plain = Optimizer::new(mlp.inner.clone(), OptimConfig::search_inner()).unwrap();
    group.bench_function("plain_lora_step", |b| {
        b.iter(|| plain.minimize(&mlp.loss(&x, &y)).unwrap())
    });

    let modes = [
        (
            "first_order",
            Hypergradient::FirstOrder,
            FiniteDifferenceForm::Implicit,
            true,
        ),
        (
            "finite_difference",
            Hypergradient::FiniteDifference,
            FiniteDifferenceForm::Implicit,
            true,
        ),
        (
            "finite_difference_darts",
            Hypergradient::FiniteDifference,
            FiniteDifferenceForm::Darts,
            true,
        ),
        (
            "finite_difference_no_rollback",
            Hypergradient::FiniteDifference,
            FiniteDifferenceForm::Implicit,
            false,
        ),
        (
            "exact",
            Hypergradient::Exact,
            FiniteDifferenceForm::Implicit,
            true,
        ),
    ];
    for (name, hypergradient, fd_form, rollback) in modes {
        let config = SearchConfig {
            hypergradient,
            fd_form,
            rollback,
            ..SearchConfig::default()
        };
        let inner = Optimizer::new(mlp.inner.clone(), OptimConfig::search_inner()).unwrap();
        let outer = Optimizer::new(mlp.selection.clone(), OptimConfig::search_outer()).unwrap();
        let mut search = BilevelSearch::new(inner, outer, config).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                search
                    .step(
                        || Ok::<_, Infallible>(mlp.loss(&x, &y)),
                        || Ok::<_, Infallible>(mlp.loss(&xv, &yv)),
                    )
                    .unwrap()
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
    targets = search_step
}
criterion_main!(benches);
