//! The layer and one search step per mode on `Device::Cuda(0)`, checked against the CPU.
//! Built only with the `cuda` feature (`cargo test -p autolora-core --features cuda`); these
//! tests need a GPU and fail without one.
#![cfg(feature = "cuda")]

mod common;

use autolora_core::bilevel::{FiniteDifferenceForm, Hypergradient, SearchConfig};
use autolora_core::optim::OptimConfig;
use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear};
use common::*;
use tch::{Cuda, Device, Kind, Tensor};

const GPU: Device = Device::Cuda(0);

fn require_gpu() {
    assert!(
        Cuda::is_available(),
        "the cuda feature's tests need a CUDA device (libtorch sees none)"
    );
}

fn modes() -> [SearchConfig; 4] {
    [
        config(Hypergradient::FirstOrder),
        config(Hypergradient::FiniteDifference),
        SearchConfig {
            fd_form: FiniteDifferenceForm::Darts,
            ..config(Hypergradient::FiniteDifference)
        },
        config(Hypergradient::Exact),
    ]
}

#[test]
fn layer_forward_backward_matches_cpu() {
    let _serial = serial();
    require_gpu();
    tch::manual_seed(4);
    let opts = (Kind::Double, Device::Cpu);
    let (w, b, x) = (
        Tensor::randn([6, 10], opts),
        Tensor::randn([6], opts),
        Tensor::randn([7, 10], opts),
    );
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
    };
    let cpu = Adapter::with_options(10, 6, &lora, Some(Gate::Softmax), opts).unwrap();
    let _ = tch::no_grad(|| cpu.b.tensor().normal_(0.0, 1.0));
    let gpu =
        Adapter::with_options(10, 6, &lora, Some(Gate::Softmax), (Kind::Double, GPU)).unwrap();
    tch::no_grad(|| {
        gpu.a.tensor().copy_(&cpu.a.tensor());
        gpu.b.tensor().copy_(&cpu.b.tensor());
    });
    let run = |adapter: &Adapter, device: Device| {
        let mut layer = LoraLinear::new(w.to_device(device), Some(b.to_device(device))).unwrap();
        layer.attach(adapter.clone()).unwrap();
        let y = layer.forward_t(&x.to_device(device), true);
        let loss = y.square().sum(Kind::Double);
        let params = [adapter.a.tensor(), adapter.b.tensor()];
        let grads = autolora_core::optim::gradients(&loss, &params, false).unwrap();
        (
            y.to_device(Device::Cpu),
            grads[0].to_device(Device::Cpu),
            grads[1].to_device(Device::Cpu),
        )
    };
    let (y0, ga0, gb0) = run(&cpu, Device::Cpu);
    let (y1, ga1, gb1) = run(&gpu, GPU);
    assert!(y1.allclose(&y0, 1e-9, 1e-9, false));
    assert!(ga1.allclose(&ga0, 1e-9, 1e-9, false));
    assert!(gb1.allclose(&gb0, 1e-9, 1e-9, false));
}

#[test]
fn one_search_step_per_mode_runs_on_the_gpu() {
    let _serial = serial();
    require_gpu();
    for mode in modes() {
        let net = lora_net(true, 0.1, Kind::Float, GPU);
        let mut engine = net.problem.engine(OptimConfig::adam(3e-4), mode);
        let (train, val) = net.problem.losses();
        let report = engine.step(train, val).unwrap();
        assert!(
            report.hypergradient_norm.is_finite(),
            "{mode:?}: {report:?}"
        );
        for t in net.problem.values() {
            assert_eq!(t.device(), GPU);
            assert_eq!(t.isfinite().all().int64_value(&[]), 1, "{mode:?}");
        }
    }
}

#[test]
fn hypergradients_match_cpu_in_f64() {
    // No dropout: CPU and CUDA generators draw different masks.
    let _serial = serial();
    require_gpu();
    for mode in modes() {
        let cpu = lora_net(false, 0.0, Kind::Double, Device::Cpu)
            .problem
            .hypergradient(OptimConfig::adam(1e-2), mode);
        let gpu = lora_net(false, 0.0, Kind::Double, GPU)
            .problem
            .hypergradient(OptimConfig::adam(1e-2), mode);
        let gpu: Vec<Tensor> = gpu.iter().map(|t| t.to_device(Device::Cpu)).collect();
        let rel = max_abs_diff(&gpu, &cpu) / max_abs(&cpu);
        assert!(rel < 1e-8, "{mode:?}: relative difference {rel:e}");
    }
}
