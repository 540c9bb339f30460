//! The rank heatmap: layers down, adapted modules across, each cell coloured by its rank and
//! labelled with it (the paper's figure).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// Splits a module path into (layer index, module kind): the first all-digit component is
/// the layer, the last component the kind, e.g. `encoder.layer.3.attention.self.query` ->
/// (3, "query"). Modules without a layer index go to layer 0.
pub fn layer_and_kind(name: &str) -> (usize, String) {
    let layer = name
        .split('.')
        .find_map(|part| part.parse::<usize>().ok())
        .unwrap_or(0);
    let kind = name.rsplit('.').next().unwrap_or(name).to_string();
    (layer, kind)
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

    /// The grid as a text table (layers as rows).
    pub fn to_table(&self) -> String {
        let mut out = format!("{:>6}", "layer");
        for kind in &self.kinds {
            out += &format!(" {kind:>8}");
        }
        out.push('\n');
        for (layer, row) in &self.cells {
            out += &format!("{layer:>6}");
            for kind in &self.kinds {
                match row.get(kind) {
                    Some(rank) => out += &format!(" {rank:>8}"),
                    None => out += &format!(" {:>8}", "-"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// Draws the heatmap as SVG (vector text needs no font files, unlike bitmaps).
    pub fn draw(&self, path: &Path, title: &str, max_rank: i64) -> Result<()> {
        let (w, h) = (
            140 + 90 * self.kinds.len() as u32,
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
            (3, "query".to_string())
        );
        assert_eq!(
            layer_and_kind("h.11.attn.c_attn"),
            (11, "c_attn".to_string())
        );
        assert_eq!(layer_and_kind("classifier"), (0, "classifier".to_string()));
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
