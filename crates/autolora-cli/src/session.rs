//! A run's shared state: resolved settings, device, model folder, output folder and the
//! task's batches. Every command starts by opening one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::derive_seed;
use autolora_data::rng::stream;
use autolora_models::{AttentionImpl, LoadOptions, Model, load_model};
use tch::{Device, Kind};

use crate::config::RunConfig;
use crate::task::TaskData;

/// The settings of the run directory's results (written by the commands that train or
/// search, read by the others).
pub const CONFIG_FILE: &str = "config.toml";

/// The task's classes or tags in id order (a JSON list), where it has them.
pub const LABELS_FILE: &str = "labels.json";

/// One line per resume that changed a setting: which, from what, to what.
pub const RESUMES_FILE: &str = "resumes.jsonl";

/// Settings that cannot change a result: a resume or a reading command may differ in them.
const NEUTRAL_KEYS: &[&str] = &[
    "run.threads",
    "run.device",
    "run.checkpoint_every",
    "run.out_dir",
    "train.eval_every",
];

/// What a command does with the run directory's settings.
#[derive(Debug, Clone)]
pub enum Intent {
    /// A new run (`search`, `train`, `run`): its settings replace the directory's.
    Start,
    /// Continue from the checkpoints (`--resume`): the settings must be those the checkpoints
    /// were written under, except for neutral keys and the keys named here (`--accept-change`),
    /// whose changes are recorded in [`RESUMES_FILE`].
    Resume {
        /// Keys whose change the user accepts.
        accepted: Vec<String>,
    },
    /// Read the run's results (`eval`, `export`): the directory's settings are used and never
    /// rewritten; `explicit` is whether the user named settings (a run file or `--set`), which
    /// must then agree with them.
    Read {
        /// Whether the settings came from the user rather than the defaults.
        explicit: bool,
    },
}

/// The settings a command runs with.
struct Settled {
    config: RunConfig,
    /// Whether they are written to the run directory (commands that write results).
    write: bool,
    /// The line for [`RESUMES_FILE`] of a resume with accepted changes.
    resume_record: Option<String>,
}

fn settled(
    config: RunConfig,
    saved: Option<&RunConfig>,
    intent: &Intent,
    saved_path: &Path,
) -> Result<Settled> {
    match (intent, saved) {
        (Intent::Start, _) | (Intent::Resume { .. }, None) => Ok(Settled {
            config,
            write: true,
            resume_record: None,
        }),
        (Intent::Resume { accepted }, Some(saved)) => {
            let changes = differences(saved, &config)?;
            let refused: Vec<&Change> = changes
                .iter()
                .filter(|c| !accepted.contains(&c.key))
                .collect();
            if !refused.is_empty() {
                bail!(
                    "--resume: the settings differ from those the run's checkpoints were written under ({}):\n{}\n\
                     resume with the same settings, or accept a change with --accept-change KEY (recorded in {RESUMES_FILE})",
                    saved_path.display(),
                    list(&refused)
                );
            }
            let resume_record = (!changes.is_empty())
                .then(|| serde_json::json!({ "resumed_with_changes": changes }).to_string());
            Ok(Settled {
                config,
                write: true,
                resume_record,
            })
        }
        (Intent::Read { .. }, None) => bail!(
            "{} not found: this command reads a run directory written by `autolora run` or `train`",
            saved_path.display()
        ),
        (Intent::Read { explicit }, Some(saved)) => {
            let mut used = saved.clone();
            used.run.device = config.run.device.clone();
            used.run.threads = config.run.threads;
            used.run.out_dir = config.run.out_dir.clone();
            if *explicit {
                let changes = differences(saved, &config)?;
                if !changes.is_empty() {
                    bail!(
                        "the given settings differ from the run's ({}):\n{}\n\
                         this command uses the run's settings; drop the differing ones",
                        saved_path.display(),
                        list(&changes.iter().collect::<Vec<_>>())
                    );
                }
            }
            Ok(Settled {
                config: used,
                write: false,
                resume_record: None,
            })
        }
    }
}

/// One setting that differs between two runs' settings.
#[derive(Debug, serde::Serialize)]
struct Change {
    key: String,
    from: String,
    to: String,
}

fn list(changes: &[&Change]) -> String {
    changes
        .iter()
        .map(|c| format!("  {}: {} -> {}", c.key, c.from, c.to))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The settings that differ between `old` and `new`, neutral keys left out, by dotted key.
/// `train.eval_every` is neutral only while no evaluation decides anything (neither
/// `train.keep_best` nor `train.patience`).
fn differences(old: &RunConfig, new: &RunConfig) -> Result<Vec<Change>> {
    let decides = |c: &RunConfig| c.train.keep_best || c.train.patience.is_some();
    let evaluations_decide = decides(old) || decides(new);
    let neutral =
        |k: &str| NEUTRAL_KEYS.contains(&k) && !(k == "train.eval_every" && evaluations_decide);
    let (old, new) = (flatten(old)?, flatten(new)?);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let missing = || "(unset)".to_string();
    Ok(keys
        .into_iter()
        .filter(|k| !neutral(k.as_str()))
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| Change {
            key: k.clone(),
            from: old.get(k).cloned().unwrap_or_else(missing),
            to: new.get(k).cloned().unwrap_or_else(missing),
        })
        .collect())
}

/// Dotted key -> value (as TOML text) of every setting.
fn flatten(config: &RunConfig) -> Result<std::collections::BTreeMap<String, String>> {
    fn walk(
        prefix: &str,
        table: &toml::Table,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(&key, t, out),
                v => {
                    out.insert(key, v.to_string());
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", &toml::Table::try_from(config)?, &mut out);
    Ok(out)
}

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
    /// Checks the settings against the run directory's (see [`Intent`]), sets threads and
    /// device, fetches the model if it is an asset and checks it, loads and tokenizes the
    /// task's data, and, when the command writes results, records the settings in the run
    /// directory.
    pub fn open(config: RunConfig, intent: &Intent) -> Result<Self> {
        config.validate()?;
        let out_dir = config.run.out_dir.clone();
        let saved_path = out_dir.join(CONFIG_FILE);
        // A new run replaces the directory's settings without reading them (they may be
        // another version's); the other intents are checked against them.
        let saved = if saved_path.is_file() && !matches!(intent, Intent::Start) {
            Some(RunConfig::load(&saved_path)?)
        } else {
            None
        };
        let Settled {
            config,
            write,
            resume_record,
        } = settled(config, saved.as_ref(), intent, &saved_path)?;
        if config.run.threads > 0 {
            tch::set_num_threads(config.run.threads as i32);
        }
        let device = device(&config)?;
        let model_dir = model_dir(&config)?;
        // The model is checked before the data are tokenized, which can take a while.
        autolora_models::check_model(&model_dir)
            .with_context(|| format!("checking the model in {}", model_dir.display()))?;
        tracing::info!(device = ?device, model = %model_dir.display(), out = %out_dir.display(), "run opened");
        let data = TaskData::load(&config, &model_dir, device)?;
        if write {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating run directory {}", out_dir.display()))?;
            if let Some(line) = resume_record {
                autolora_data::atomic::append_line(&out_dir.join(RESUMES_FILE), &line)?;
            }
            if let Some(planted) = &data.planted {
                autolora_data::atomic::write(
                    &out_dir.join(crate::planted::REPORT_FILE),
                    serde_json::to_string_pretty(planted)?.as_bytes(),
                )?;
            }
            if let Some(labels) = data.spec.labels() {
                autolora_data::atomic::write(
                    &out_dir.join(LABELS_FILE),
                    serde_json::to_string_pretty(labels)?.as_bytes(),
                )?;
            }
            autolora_data::atomic::write(&saved_path, config.to_toml()?.as_bytes())?;
        }
        Ok(Session {
            config,
            device,
            model_dir,
            out_dir,
            data,
        })
    }

    /// Loads a fresh copy of the base model with the task's head (seeded, readied by
    /// [`TaskSpec::prepare_head`](crate::task::TaskSpec::prepare_head)), no adapters, and
    /// reseeds libtorch's generator from the run seed, so that adapters attached next are
    /// initialised the same way in every run with this seed.
    pub fn load_model(&self, attention: AttentionImpl) -> Result<Box<dyn Model>> {
        let spec = &self.data.spec;
        let model = load_base(
            &self.config,
            &self.model_dir,
            self.device,
            spec.model_task(),
            attention,
        )?;
        spec.prepare_head(model.as_ref());
        Ok(model)
    }

    /// A path inside the run directory.
    pub fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.out_dir.join(name)
    }
}

/// The device `run.device` names (`auto`: CUDA where libtorch sees it).
pub fn device(config: &RunConfig) -> Result<Device> {
    Ok(match config.run.device.as_str() {
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
    })
}

/// The model folder (or GGUF file) of the settings: `model.dir`, or the fetched `model.asset`.
pub fn model_dir(config: &RunConfig) -> Result<PathBuf> {
    match (&config.model.dir, &config.model.asset) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(asset)) => autolora_data::assets::fetch(asset)
            .with_context(|| format!("fetching model asset `{asset}`")),
        (None, None) => bail!("set model.dir or model.asset"),
    }
}

/// The base model of the run's settings with a freshly initialised `task` head (seeded by the
/// run seed), libtorch's generator reseeded for the adapters attached next. Every model of a
/// run comes from here: the session's, and a task's own (the planted task's teacher).
pub fn load_base(
    config: &RunConfig,
    model_dir: &Path,
    device: Device,
    task: autolora_models::Task,
    attention: AttentionImpl,
) -> Result<Box<dyn Model>> {
    let seed = config.run.seed;
    tch::manual_seed(derive_seed(seed, 0, stream::ADAPTER_INIT));
    let base_kind = match config.model.base_dtype.as_str() {
        "f32" => None,
        "bf16" => Some(Kind::BFloat16),
        other => bail!("model.base_dtype must be f32 or bf16, got `{other}`"),
    };
    let options = LoadOptions {
        device,
        kind: Kind::Float,
        base_kind,
        seed: autolora_data::rng::derive_seed(seed, 0, stream::HEAD_INIT),
        attention,
        dropout: config.model.dropout,
    };
    load_model(model_dir, task, &options)
        .with_context(|| format!("loading the model from {}", model_dir.display()))
}

#[cfg(test)]
mod tests {
    use autolora_core::bilevel::{TRAIN_STREAM, VAL_STREAM, derive_seed};
    use autolora_data::rng::{self, stream};

    /// The workspace has one seed scheme; core (which cannot depend on the data crate) keeps
    /// its own copy of the function for libtorch's signed seed.
    #[test]
    fn core_and_data_derive_the_same_seeds() {
        assert_eq!(TRAIN_STREAM, stream::SEARCH_TRAIN_DROPOUT);
        assert_eq!(VAL_STREAM, stream::SEARCH_VAL_DROPOUT);
        for (seed, index, s) in [(0, 0, 0), (42, 7, 3), (u64::MAX, 123_456, 11), (5, 0, 9)] {
            assert_eq!(
                derive_seed(seed, index, s),
                (rng::derive_seed(seed, index, s) >> 1) as i64
            );
        }
    }
}
