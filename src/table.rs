//! Plain-text tables for the terminal and the README, fitted to [`TERMINAL_WIDTH`] columns; a
//! bottom-level utility, so that any stage (deploy, batch, report) can print one.
//!
//! A table fits by giving up room in the columns marked for it, in the order they were marked:
//! a name column ([`Table::names`]) shortens the names that no longer fit to `#<row> <tail>`
//! (see [`short_name`]), a wrapped column ([`Table::wrap`]) continues its text on the next
//! lines; when that is not enough, the optional columns ([`Table::optional`]) are left out, and
//! a line says which. Only what is displayed changes: the cells keep the whole text, and the
//! CSV, parquet and JSON files the commands write hold the whole names.

use crate::escape::terminal_text;

/// The width terminal tables are fitted to.
pub(crate) const TERMINAL_WIDTH: usize = 120;

/// The narrowest a name column is made: `#123 ` and a dozen characters of the name.
const MIN_NAME_WIDTH: usize = 16;

/// The narrowest a wrapped column is made.
const MIN_WRAP_WIDTH: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fit {
    /// Always as wide as its widest cell.
    Whole,
    /// Long names shortened to `#<row> <tail>`.
    Names,
    /// Text continued on the next lines.
    Wrap,
}

/// A table with a header row, right-aligned numeric columns and left-aligned text columns.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned left (text); the others are aligned right.
    left: Vec<bool>,
    fit: Vec<Fit>,
    /// Columns that give up room, in the order they do.
    shrink_order: Vec<usize>,
    /// Columns left out when shrinking is not enough, in the order they are.
    drop_order: Vec<usize>,
}

impl Table {
    /// `headers` ending in `<` are left-aligned (the marker is dropped).
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| h.trim_end_matches('<').to_string())
                .collect(),
            left: headers.iter().map(|h| h.ends_with('<')).collect(),
            fit: vec![Fit::Whole; headers.len()],
            shrink_order: Vec::new(),
            drop_order: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Marks the column headed `header` as names (of layers, tensors, files): when the table is
    /// too wide, the names that do not fit become `#<row> <tail>`, where `<row>` counts the
    /// table's rows from 0 (rules aside), which keeps them distinct.
    pub fn names(self, header: &str) -> Table {
        self.mark(header, Fit::Names)
    }

    /// Marks the column headed `header` as prose: when the table is too wide, its text
    /// continues on the next lines.
    pub(crate) fn wrap(self, header: &str) -> Table {
        self.mark(header, Fit::Wrap)
    }

    /// Marks the column headed `header` as one to leave out, after the others marked so, when
    /// shortening names and wrapping text does not make the table fit; a line under the table
    /// names the columns left out.
    pub(crate) fn optional(mut self, header: &str) -> Table {
        let header = header.trim_end_matches('<');
        if let Some(i) = self.headers.iter().position(|h| h == header) {
            self.drop_order.retain(|&c| c != i);
            self.drop_order.push(i);
        }
        self
    }

    fn mark(mut self, header: &str, fit: Fit) -> Table {
        let header = header.trim_end_matches('<');
        if let Some(i) = self.headers.iter().position(|h| h == header) {
            self.fit[i] = fit;
            self.shrink_order.retain(|&c| c != i);
            self.shrink_order.push(i);
        }
        self
    }

    /// Cells may hold names from input files: control characters are escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| terminal_text(c)).collect());
    }

    /// A separator line before the next row (e.g. before totals).
    pub(crate) fn rule(&mut self) {
        self.rows.push(Vec::new());
    }

    /// The table fitted to [`TERMINAL_WIDTH`] columns.
    pub fn render(&self) -> String {
        self.render_width(TERMINAL_WIDTH)
    }

    /// The table fitted to `width` columns, as far as its name, wrapped and optional columns
    /// allow.
    pub(crate) fn render_width(&self, width: usize) -> String {
        let (widths, shown) = self.fit_widths(width);
        let display = self.display_rows(&widths);
        // Shortened names may leave their column narrower than the room it was given.
        let mut widths = widths;
        for i in (0..self.headers.len()).filter(|&i| self.fit[i] == Fit::Names) {
            widths[i] = display
                .iter()
                .flatten()
                .flatten()
                .map(|l| chars(&l[i]))
                .chain([chars(&self.headers[i])])
                .max()
                .unwrap_or(0);
        }
        let visible: Vec<usize> = (0..self.headers.len()).filter(|&i| shown[i]).collect();
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (k, &i) in visible.iter().enumerate() {
                let width = widths[i];
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if k > 0 {
                    out.push_str("  ");
                }
                if self.left[i] {
                    out.push_str(&format!("{cell:<width$}"));
                } else {
                    out.push_str(&format!("{cell:>width$}"));
                }
            }
            out.trim_end().to_string()
        };
        let total: usize =
            visible.iter().map(|&i| widths[i]).sum::<usize>() + 2 * visible.len().saturating_sub(1);
        let mut out = line(&self.headers);
        out.push('\n');
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for row in &display {
            match row {
                None => out.push_str(&"-".repeat(total)),
                Some(lines) => {
                    let text: Vec<String> = lines.iter().map(|l| line(l)).collect();
                    out.push_str(&text.join("\n"));
                }
            }
            out.push('\n');
        }
        let dropped: Vec<&str> = (0..self.headers.len())
            .filter(|&i| !shown[i])
            .map(|i| self.headers[i].as_str())
            .collect();
        if !dropped.is_empty() {
            out.push_str(&format!(
                "(left out to fit {width} columns: {})\n",
                dropped.join(", ")
            ));
        }
        out
    }

    /// Each column's width within `width` and whether it is shown: the name and wrapped
    /// columns shrink; while that is not enough, the optional columns are left out one by one
    /// (and the others shrink again with the room they leave).
    fn fit_widths(&self, width: usize) -> (Vec<usize>, Vec<bool>) {
        let columns = self.headers.len();
        let mut natural: Vec<usize> = self.headers.iter().map(|h| chars(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                natural[i] = natural[i].max(chars(cell));
            }
        }
        let mut shown = vec![true; columns];
        loop {
            let mut widths: Vec<usize> = (0..columns)
                .map(|i| if shown[i] { natural[i] } else { 0 })
                .collect();
            let visible = shown.iter().filter(|&&s| s).count();
            let gaps = 2 * visible.saturating_sub(1);
            let mut excess = (widths.iter().sum::<usize>() + gaps).saturating_sub(width);
            for &i in self.shrink_order.iter().filter(|&&i| shown[i]) {
                let floor = match self.fit[i] {
                    Fit::Names => MIN_NAME_WIDTH,
                    _ => MIN_WRAP_WIDTH,
                }
                .max(chars(&self.headers[i]));
                let give = excess.min(widths[i].saturating_sub(floor));
                widths[i] -= give;
                excess -= give;
            }
            match self.drop_order.iter().find(|&&i| shown[i]) {
                Some(&i) if excess > 0 => shown[i] = false,
                _ => return (widths, shown),
            }
        }
    }

    /// Per name column, how many leading scopes every name shortened to its width shares: they
    /// say nothing about the row, so the shortened names leave them out.
    fn common_scopes(&self, widths: &[usize]) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                if self.fit[i] != Fit::Names {
                    return 0;
                }
                let long: Vec<Vec<&str>> = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .filter(|c| chars(c) > widths[i])
                    .map(|c| scopes(c))
                    .collect();
                match long.split_first() {
                    Some((first, rest)) if !rest.is_empty() => (0..first.len().saturating_sub(1))
                        .take_while(|&k| rest.iter().all(|p| p.len() > k + 1 && p[k] == first[k]))
                        .count(),
                    _ => 0,
                }
            })
            .collect()
    }

    /// Every row as one or more lines of cells at `widths`: names shortened, wrapped cells
    /// continued below the others. `None` is a rule.
    fn display_rows(&self, widths: &[usize]) -> Vec<Option<Vec<Vec<String>>>> {
        let columns = self.headers.len();
        let common = self.common_scopes(widths);
        let mut ordinal = 0;
        let mut display: Vec<Option<Vec<Vec<String>>>> = Vec::new();
        for row in &self.rows {
            if row.is_empty() {
                display.push(None);
                continue;
            }
            let mut lines: Vec<Vec<String>> = vec![vec![String::new(); columns]];
            for (i, cell) in row.iter().enumerate().take(columns) {
                match self.fit[i] {
                    Fit::Whole => lines[0][i] = cell.clone(),
                    Fit::Names => lines[0][i] = shorten(cell, ordinal, widths[i], common[i]),
                    Fit::Wrap => {
                        for (k, part) in wrap_text(cell, widths[i]).into_iter().enumerate() {
                            if lines.len() <= k {
                                lines.push(vec![String::new(); columns]);
                            }
                            lines[k][i] = part;
                        }
                    }
                }
            }
            display.push(Some(lines));
            ordinal += 1;
        }
        display
    }
}

/// The characters (not bytes) of `s`: the width it takes on a terminal.
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `name` as it fits in `width` characters: whole when it fits, otherwise `#<index> <tail>`.
///
/// The tail is the readable end of the name. Converters join the names of fused operations with
/// `;` and nest scopes with `/` (`model/conv2d_13/BiasAdd;model/re_lu_9/Relu6`): the tail keeps
/// the first operation, drops its trailing operation types (`Conv2D`, `BiasAdd`: CamelCase parts
/// after the first two) and keeps as many of the last scopes as fit (`#12 model/conv2d_13`). A
/// last scope longer than the room left is cut with `…`. `index` keeps shortened names distinct.
/// In a table, the scopes that all of a column's shortened names start with are left out too.
pub(crate) fn short_name(name: &str, index: usize, width: usize) -> String {
    shorten(name, index, width, 0)
}

/// The scopes of a name's first operation, without its trailing operation types.
fn scopes(name: &str) -> Vec<&str> {
    let first = name
        .split(';')
        .find(|s| !s.trim().is_empty())
        .unwrap_or(name);
    let mut parts: Vec<&str> = first.split('/').filter(|p| !p.is_empty()).collect();
    while parts.len() > 2
        && parts
            .last()
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        parts.pop();
    }
    if parts.is_empty() {
        parts.push(first);
    }
    parts
}

/// [`short_name`] without the first `common` scopes.
fn shorten(name: &str, index: usize, width: usize, common: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let prefix = format!("#{index} ");
    let room = width.saturating_sub(prefix.chars().count()).max(4);
    let parts = scopes(name);
    let parts = &parts[common.min(parts.len() - 1)..];
    let mut tail = String::new();
    for part in parts.iter().rev() {
        let longer = if tail.is_empty() {
            (*part).to_string()
        } else {
            format!("{part}/{tail}")
        };
        if longer.chars().count() > room {
            break;
        }
        tail = longer;
    }
    if tail.is_empty() {
        let last = parts.last().copied().unwrap_or(name);
        tail = last.chars().take(room - 1).collect::<String>() + "…";
    }
    prefix + &tail
}

/// `text` in lines of at most `width` characters, broken at spaces (words longer than a line are
/// cut).
fn wrap_text(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let need = word.len() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            // A word longer than a line: its first `width` characters, then the rest.
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["name<", "value"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long".into(), "100".into()]);
        assert_eq!(
            t.render(),
            "name  value\n-----------\na         1\nlong    100\n"
        );
    }

    /// A TFLite-style name of 200+ characters: fused operations joined with `;`.
    fn tflite_name(i: usize) -> String {
        format!(
            "StatefulPartitionedCall/sequential_1/conv2d_{i}/Conv2D;StatefulPartitionedCall/sequential_1/conv2d_{i}/BiasAdd;StatefulPartitionedCall/sequential_1/batch_normalization_{i}/FusedBatchNormV3;StatefulPartitionedCall/sequential_1/re_lu_{i}/Relu6"
        )
    }

    #[test]
    fn long_names_are_shortened_with_distinct_indices_to_fit_120_columns() {
        let mut t =
            Table::new(&["#", "layer<", "op<", "cycles", "flash B", "RAM B"]).names("layer");
        let names: Vec<String> = (0..14).map(tflite_name).collect();
        assert!(names.iter().all(|n| n.len() > 200));
        for (i, name) in names.iter().enumerate() {
            t.row(vec![
                i.to_string(),
                name.clone(),
                "conv+relu6".into(),
                "1,234,567".into(),
                "12,345".into(),
                "6,789".into(),
            ]);
        }
        t.rule();
        t.row(vec![String::new(), "total".into()]);
        let text = t.render();
        for line in text.lines() {
            assert!(line.chars().count() <= TERMINAL_WIDTH, "{line}");
        }
        let shown: Vec<&str> = text
            .lines()
            .skip(2)
            .take(14)
            .map(|l| l.split("  ").nth(1).unwrap_or_default().trim())
            .collect();
        for (i, cell) in shown.iter().enumerate() {
            assert!(
                cell.starts_with(&format!("#{i} ")) && cell.contains(&format!("conv2d_{i}")),
                "{cell}"
            );
        }
        let mut indices: Vec<&str> = shown
            .iter()
            .map(|c| c.split(' ').next().unwrap_or_default())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        assert_eq!(indices.len(), 14, "{text}");
        assert!(text.contains("total"));
        // The cells keep the whole names for the files; only the rendering shortens.
        assert_eq!(t.rows[3][1], names[3]);
        // A table that fits keeps its names whole.
        let mut narrow = Table::new(&["layer<", "bits"]).names("layer");
        narrow.row(vec!["conv1".into(), "8".into()]);
        assert!(narrow.render().contains("conv1"));
        let whole = t.render_width(1000);
        assert!(names.iter().all(|n| whole.contains(n.as_str())));
    }

    #[test]
    fn short_names_keep_the_scope_of_the_first_operation() {
        assert_eq!(
            short_name(
                "model/conv2d_13/Conv2D;model/conv2d_13/BiasAdd;model/re_lu_9/Relu6",
                12,
                30
            ),
            "#12 model/conv2d_13"
        );
        assert_eq!(short_name(&tflite_name(7), 7, 16), "#7 conv2d_7");
        assert_eq!(short_name("conv1", 0, 16), "conv1");
        let cut = short_name(&"x".repeat(300), 3, 16);
        assert_eq!(cut.chars().count(), 16);
        assert!(cut.starts_with("#3 x") && cut.ends_with('…'));
    }

    #[test]
    fn optional_columns_make_room_and_are_named() {
        let mut t = Table::new(&["layer<", "input<", "output<", "ms"])
            .names("layer")
            .optional("input")
            .optional("ms");
        t.row(vec![
            "conv1".into(),
            "3x224x224".into(),
            "32x112x112".into(),
            "14.631".into(),
        ]);
        assert!(!t.render().contains("left out"));
        let text = t.render_width(30);
        assert!(
            text.lines().take(3).all(|l| l.chars().count() <= 30),
            "{text}"
        );
        assert!(
            !text.contains("3x224x224") && text.contains("14.631"),
            "{text}"
        );
        assert!(
            text.ends_with("(left out to fit 30 columns: input)\n"),
            "{text}"
        );
    }

    #[test]
    fn prose_wraps_under_its_column() {
        let mut t = Table::new(&["name<", "description<"]).wrap("description");
        t.row(vec![
            "gap8".into(),
            "GreenWaves GAP8: 8-core XpulpV2 cluster, 64 kB L1, 512 kB L2, HyperRAM/HyperFlash L3"
                .into(),
        ]);
        let text = t.render_width(40);
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.lines().count() > 3, "{text}");
        let words: Vec<&str> = text
            .lines()
            .skip(2)
            .flat_map(str::split_whitespace)
            .collect();
        assert_eq!(
            words.join(" "),
            "gap8 GreenWaves GAP8: 8-core XpulpV2 cluster, 64 kB L1, 512 kB L2, HyperRAM/HyperFlash L3"
        );
    }
}
