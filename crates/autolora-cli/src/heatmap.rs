//! The rank heatmap: layers down, adapted modules across, each cell coloured by its rank and
//! labelled with it (the paper's figure).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// Splits a module path into (layer index, role): the first all-digit component is the
/// layer, everything after it the module's role within the layer, e.g.
/// `encoder.layer.3.attention.output.dense` -> (3, "attention.output.dense"). The whole role is
/// kept because its last component alone is ambiguous (BERT has three `dense` modules per
/// layer, GPT-2 two `c_proj`). Modules without a layer index go to layer 0 under their full
/// name.
pub fn layer_and_kind(name: &str) -> (usize, String) {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.iter().position(|p| p.parse::<usize>().is_ok()) {
        Some(i) if i + 1 < parts.len() => (parts[i].parse().unwrap_or(0), parts[i + 1..].join(".")),
        _ => (0, name.to_string()),
    }
}

/// A grid of ranks: `cells[layer][kind]`.
pub struct RankGrid {
    /// Module kinds (columns), in first-seen order.
    pub kinds: Vec<String>,
    /// Per layer, per kind, the rank.
    pub cells: BTreeMap<usize, BTreeMap<String, i64>>,
}

impl RankGrid {
    /// Builds the grid from (module name, rank) pairs.
    pub fn new<'a>(ranks: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let mut kinds: Vec<String> = Vec::new();
        let mut cells: BTreeMap<usize, BTreeMap<String, i64>> = BTreeMap::new();
        for (name, rank) in ranks {
            let (layer, kind) = layer_and_kind(name);
            if !kinds.contains(&kind) {
                kinds.push(kind.clone());
            }
            cells.entry(layer).or_default().insert(kind, rank);
        }
        RankGrid { kinds, cells }
    }

    /// The grid as a text table (layers as rows, one column per role, as wide as its name).
    pub fn to_table(&self) -> String {
        let widths: Vec<usize> = self.kinds.iter().map(|k| k.len().max(5)).collect();
        let mut out = format!("{:>6}", "layer");
        for (kind, w) in self.kinds.iter().zip(&widths) {
            out += &format!(" {kind:>w$}");
        }
        out.push('\n');
        for (layer, row) in &self.cells {
            out += &format!("{layer:>6}");
            for (kind, w) in self.kinds.iter().zip(&widths) {
                match row.get(kind) {
                    Some(rank) => out += &format!(" {rank:>w$}"),
                    None => out += &format!(" {:>w$}", "-"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// Draws the heatmap as SVG (vector text needs no font files, unlike bitmaps).
    pub fn draw(&self, path: &Path, title: &str, max_rank: i64) -> Result<()> {
        // Columns wide enough for the longest role name at about 7 px a character.
        let longest = self.kinds.iter().map(String::len).max().unwrap_or(0) as u32;
        let (w, h) = (
            140 + (7 * longest + 10).max(90) * self.kinds.len() as u32,
            90 + 34 * self.cells.len() as u32,
        );
        self.draw_on(
            SVGBackend::new(path, (w, h)).into_drawing_area(),
            title,
            max_rank,
        )
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
        title: &str,
        max_rank: i64,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the heatmap: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let layers: Vec<usize> = self.cells.keys().copied().collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0..self.kinds.len(), 0..layers.len())
            .map_err(err)?;
        let kinds = self.kinds.clone();
        let layer_labels = layers.clone();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(kinds.len())
            .y_labels(layers.len())
            .x_label_formatter(&|i| kinds.get(*i).cloned().unwrap_or_default())
            .y_label_formatter(&|i| {
                layer_labels
                    .get(*i)
                    .map(|l| format!("layer {l}"))
                    .unwrap_or_default()
            })
            .x_desc("module")
            .draw()
            .map_err(err)?;
        for (row, layer) in layers.iter().enumerate() {
            for (col, kind) in self.kinds.iter().enumerate() {
                let Some(&rank) = self.cells[layer].get(kind) else {
                    continue;
                };
                let t = rank as f64 / max_rank.max(1) as f64;
                let color = RGBColor(
                    (255.0 * (1.0 - 0.8 * t)) as u8,
                    (255.0 * (1.0 - 0.55 * t)) as u8,
                    255,
                );
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(col, row), (col + 1, row + 1)],
                        color.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        rank.to_string(),
                        (col, row),
                        ("sans-serif", 16).into_font().color(&BLACK),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_split_into_layer_and_kind() {
        assert_eq!(
            layer_and_kind("encoder.layer.3.attention.self.query"),
            (3, "attention.self.query".to_string())
        );
        assert_eq!(
            layer_and_kind("h.11.attn.c_proj"),
            (11, "attn.c_proj".to_string())
        );
        assert_eq!(layer_and_kind("classifier"), (0, "classifier".to_string()));
    }

    #[test]
    fn modules_sharing_a_last_name_keep_their_own_cells() {
        let names = [
            "encoder.layer.0.attention.output.dense",
            "encoder.layer.0.intermediate.dense",
            "encoder.layer.0.output.dense",
            "h.0.attn.c_proj",
            "h.0.mlp.c_proj",
        ];
        let grid = RankGrid::new(names.iter().zip(1..).map(|(n, r)| (*n, r)));
        assert_eq!(grid.kinds.len(), 5, "{:?}", grid.kinds);
        let table = grid.to_table();
        assert_eq!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["0", "1", "2", "3", "4", "5"],
            "{table}"
        );
    }

    #[test]
    fn grid_table_and_svg() -> Result<()> {
        let grid = RankGrid::new([("l.0.query", 3), ("l.0.value", 5), ("l.1.query", 1)]);
        let table = grid.to_table();
        assert!(table.contains("query"), "{table}");
        assert_eq!(
            table.lines().nth(2).unwrap().split_whitespace().last(),
            Some("-")
        );
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ranks.svg");
        grid.draw(&path, "ranks", 8)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(
            svg.contains("<svg") && svg.contains("\n5\n"),
            "heatmap lacks its labels"
        );
        Ok(())
    }
}
