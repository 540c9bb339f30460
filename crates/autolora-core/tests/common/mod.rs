//! Problems and helpers shared by the search-engine test binaries.
#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use autolora_core::bilevel::{BilevelSearch, FiniteDifferenceForm, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::param::trainable;
use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear, Param, SelectionGate};
use tch::{Device, Kind, Tensor};

pub const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// libtorch's generator is global to the process and the test harness runs tests on several
/// threads: every test holds this lock so seeded draws are not interleaved.
static TORCH_RNG: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A bilevel problem: inner weights, selection variables, two losses reading the slots.
pub struct Problem {
    pub inner: Vec<Param>,
    pub outer: Vec<Param>,
    pub train: Rc<dyn Fn() -> Tensor>,
    pub val: Rc<dyn Fn() -> Tensor>,
}

impl Problem {
    pub fn engine(&self, inner: OptimConfig, search: SearchConfig) -> BilevelSearch {
        let inner = Optimizer::new(self.inner.clone(), inner).unwrap();
        let outer = Optimizer::new(self.outer.clone(), OptimConfig::search_outer()).unwrap();
        BilevelSearch::new(inner, outer, search).unwrap()
    }

    pub fn losses(
        &self,
    ) -> (
        impl FnMut() -> Result<Tensor, Infallible> + use<>,
        impl FnMut() -> Result<Tensor, Infallible> + use<>,
    ) {
        let (train, val) = (self.train.clone(), self.val.clone());
        (move || Ok(train()), move || Ok(val()))
    }

    pub fn hypergradient(&self, inner: OptimConfig, search: SearchConfig) -> Vec<Tensor> {
        let mut engine = self.engine(inner, search);
        let (train, val) = self.losses();
        engine.hypergradient(train, val).unwrap().grads
    }

    pub fn values(&self) -> Vec<Tensor> {
        self.inner
            .iter()
            .chain(&self.outer)
            .map(|p| p.tensor().detach().copy())
            .collect()
    }
}

pub fn max_abs_diff(x: &[Tensor], y: &[Tensor]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

pub fn max_abs(x: &[Tensor]) -> f64 {
    x.iter()
        .map(|a| a.abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

pub fn bit_equal(x: &[Tensor], y: &[Tensor]) -> bool {
    x.iter().zip(y).all(|(a, b)| a.equal(b))
}

pub fn config(hypergradient: Hypergradient) -> SearchConfig {
    SearchConfig {
        hypergradient,
        seed: 7,
        ..SearchConfig::default()
    }
}

pub fn darts() -> SearchConfig {
    SearchConfig {
        fd_form: FiniteDifferenceForm::Darts,
        ..config(Hypergradient::FiniteDifference)
    }
}

// ---------------------------------------------------------------------------------------------
// A small nonlinear network with a selective LoRA layer and dropout:
//   loss = mean((head . tanh(LoraLinear(x)) - y)^2)

pub struct LoraNet {
    pub problem: Problem,
    pub layer: Rc<LoraLinear>,
}

/// A small network `head . tanh(LoraLinear(x))` with a selective adapter (rank 4, softmax) and
/// an MSE loss on data from a shared teacher. Everything is drawn on the CPU with a fixed seed
/// and then moved to `device`, so the same problem can be built on any device.
pub fn lora_net(b_zero: bool, dropout: f64, kind: Kind, device: Device) -> LoraNet {
    tch::manual_seed(5);
    let cpu = (kind, Device::Cpu);
    let on = |t: Tensor| t.to_device(device);
    let (d_in, d_out, n) = (6, 5, 16);
    let mut layer = LoraLinear::new(
        on(Tensor::randn([d_out, d_in], cpu) * 0.5),
        Some(on(Tensor::randn([d_out], cpu) * 0.1)),
    )
    .unwrap();
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout,
    };
    let drawn = Adapter::with_options(d_in, d_out, &lora, Some(Gate::Softmax), cpu).unwrap();
    let b = if b_zero {
        drawn.b.tensor().detach()
    } else {
        drawn.b.tensor().detach().normal_(0.0, 0.3)
    };
    let logits = drawn
        .gate
        .as_ref()
        .unwrap()
        .logits
        .tensor()
        .detach()
        .normal_(0.0, 0.5);
    let mut gate = SelectionGate::with_options(lora.rank, Gate::Softmax, (kind, device));
    gate.logits = trainable(on(logits));
    let adapter = Adapter {
        a: trainable(on(drawn.a.tensor().detach())),
        b: trainable(on(b)),
        gate: Some(gate),
        ..drawn
    };
    let head = trainable(on(Tensor::randn([1, d_out], cpu) * 0.5));
    let inner = vec![adapter.a.clone(), adapter.b.clone(), head.clone()];
    let outer = vec![adapter.gate.as_ref().unwrap().logits.clone()];
    layer.attach(adapter).unwrap();
    let layer = Rc::new(layer);
    let loss_on = |x: Tensor, y: Tensor| {
        let (layer, head) = (layer.clone(), head.clone());
        Rc::new(move || {
            let h = layer.forward_t(&x, true).tanh();
            (h.linear::<Tensor>(&head.tensor(), None) - &y)
                .square()
                .mean(kind)
        }) as Rc<dyn Fn() -> Tensor>
    };
    // Train and validation data from one teacher, so fitting one helps the other.
    let teacher = Tensor::randn([d_in, 3], cpu);
    let sample = || {
        let x = Tensor::randn([n, d_in], cpu);
        let y = x.mm(&teacher).tanh().sum_dim_intlist(1, true, kind);
        (on(x), on(y))
    };
    let (x, y) = sample();
    let train = loss_on(x, y);
    let (x, y) = sample();
    let val = loss_on(x, y);
    LoraNet {
        problem: Problem {
            inner,
            outer,
            train,
            val,
        },
        layer,
    }
}
