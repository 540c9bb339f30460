//! A run's shared state: resolved settings, device, model folder, output folder and the
//! task's batches. Every command starts by opening one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use autolora_models::{AttentionImpl, LoadOptions, Model, load_model};
use tch::{Device, Kind};

use crate::config::RunConfig;
use crate::task::TaskData;

/// The resolved settings file in the run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// See the module docs.
pub struct Session {
    /// Resolved settings.
    pub config: RunConfig,
    /// Where tensors live.
    pub device: Device,
    /// The Hugging Face model folder.
    pub model_dir: PathBuf,
    /// The run directory.
    pub out_dir: PathBuf,
    /// The task's batches.
    pub data: TaskData,
}

impl Session {
    /// Validates `config`, sets threads and device, fetches the model if it is an asset,
    /// loads and tokenizes the task's data, and writes the resolved settings into the run
    /// directory.
    pub fn open(config: RunConfig) -> Result<Self> {
        config.validate()?;
        if config.run.threads > 0 {
            tch::set_num_threads(config.run.threads as i32);
        }
        let device = match config.run.device.as_str() {
            "cpu" => Device::Cpu,
            "cuda" => {
                if !tch::Cuda::is_available() {
                    bail!(
                        "run.device = \"cuda\" but libtorch sees no CUDA device (build with `--features cuda` on a GPU machine)"
                    );
                }
                Device::Cuda(0)
            }
            _ => Device::cuda_if_available(),
        };
        let model_dir = match (&config.model.dir, &config.model.asset) {
            (Some(dir), _) => dir.clone(),
            (None, Some(asset)) => autolora_data::assets::fetch(asset)
                .with_context(|| format!("fetching model asset `{asset}`"))?,
            (None, None) => bail!("set model.dir or model.asset"),
        };
        let out_dir = config.run.out_dir.clone();
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating run directory {}", out_dir.display()))?;
        crate::atomic::write(&out_dir.join(CONFIG_FILE), config.to_toml()?.as_bytes())?;
        tracing::info!(device = ?device, model = %model_dir.display(), out = %out_dir.display(), "run opened");
        let data = TaskData::load(&config, &model_dir, device)?;
        Ok(Session {
            config,
            device,
            model_dir,
            out_dir,
            data,
        })
    }

    /// Loads a fresh copy of the base model with the task's head (seeded), no adapters, and
    /// reseeds libtorch's generator with the run seed, so that adapters attached next are
    /// initialised the same way in every run with this seed.
    pub fn load_model(&self, attention: AttentionImpl) -> Result<Box<dyn Model>> {
        tch::manual_seed(self.config.run.seed as i64);
        let base_kind = match self.config.model.base_dtype.as_str() {
            "f32" => None,
            "bf16" => Some(Kind::BFloat16),
            other => bail!("model.base_dtype must be f32 or bf16, got `{other}`"),
        };
        let options = LoadOptions {
            device: self.device,
            kind: Kind::Float,
            base_kind,
            seed: self.config.run.seed,
            attention,
        };
        load_model(&self.model_dir, self.data.spec.model_task(), &options)
            .with_context(|| format!("loading the model from {}", self.model_dir.display()))
    }

    /// A path inside the run directory.
    pub fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.out_dir.join(name)
    }
}
