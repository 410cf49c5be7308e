//! The report's figures, drawn with plotters, each written as SVG and as PNG (at twice the
//! size, for sharp lines and text).
//!
//! Text is drawn with DejaVu Sans, embedded in the binary, so that no system font library is
//! needed; SVG files name the font family `sans-serif` and leave the drawing to the viewer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use episodic::config::MethodKind;

use super::{Group, Model, Run, Stat};

/// The embedded font (DejaVu Sans; licence in `assets/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Font family of every text.
const FAMILY: &str = "sans-serif";

/// PNG pixels per SVG pixel.
const PNG_SCALE: u32 = 2;

/// Text colour.
const INK: RGBColor = RGBColor(34, 34, 34);
/// Axis lines and error bars.
const AXIS: RGBColor = RGBColor(90, 90, 90);
/// Grid lines.
const GRID: RGBColor = RGBColor(225, 225, 225);

/// Colours of the known methods (matplotlib's tab10), the same in every figure.
const METHOD_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),  // single: blue
    RGBColor(255, 127, 14),  // independent: orange
    RGBColor(44, 160, 44),   // multimodal: green
    RGBColor(148, 103, 189), // ewc: purple
    RGBColor(140, 86, 75),   // icarl: brown
    RGBColor(227, 119, 194), // agem: pink
    RGBColor(188, 189, 34),  // er: olive
    RGBColor(214, 39, 40),   // gem: red
];

/// Colours of other methods, in order of appearance.
const OTHER_COLORS: [RGBColor; 4] = [
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(0, 0, 0),
    RGBColor(102, 0, 153),
];

/// Anchors of the viridis colour map, equally spaced on [0, 1].
const VIRIDIS: [(u8, u8, u8); 8] = [
    (68, 1, 84),
    (70, 50, 127),
    (54, 92, 141),
    (39, 127, 143),
    (31, 162, 136),
    (74, 194, 110),
    (160, 219, 57),
    (254, 232, 37),
];

/// File stem of Figure 1.
pub(crate) const FIG1: &str = "fig1-metrics";

/// File stem of the first-task figure of `benchmark`.
pub(crate) fn first_task_stem(benchmark: &str) -> String {
    format!("fig2-first-task-{}", super::slug(benchmark))
}

/// File stem of the each-task figure of `benchmark`.
pub(crate) fn each_task_stem(benchmark: &str) -> String {
    format!("fig2-each-task-{}", super::slug(benchmark))
}

/// Draws every figure into `out`; returns the files written.
pub(crate) fn write_all(model: &Model, out: &Path) -> Result<Vec<PathBuf>> {
    register_fonts()?;
    let mut files = Vec::new();
    write_figure(out, FIG1, &MetricsFigure { model }, &mut files)?;
    for benchmark in &model.benchmarks {
        let groups: Vec<&Group> = model.groups_of(benchmark).collect();
        let figure = CurveFigure {
            model,
            benchmark,
            groups: &groups,
        };
        write_figure(out, &first_task_stem(benchmark), &figure, &mut files)?;
        let figure = EachTaskFigure {
            benchmark,
            groups: &groups,
        };
        write_figure(out, &each_task_stem(benchmark), &figure, &mut files)?;
    }
    for run in &model.runs {
        write_figure(out, &run.matrix_stem(), &MatrixFigure { run }, &mut files)?;
    }
    Ok(files)
}

/// Registers the embedded font with plotters, once.
fn register_fonts() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        bail!("the embedded font cannot be read")
    }
}

/// A figure that can be drawn on any plotters backend.
trait Figure {
    /// Width and height in SVG pixels.
    fn size(&self) -> (u32, u32);

    /// Draws on `root`; every length is multiplied by `s` (pixels per SVG pixel).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Writes `figure` as `out/stem.svg` and `out/stem.png` and records both in `files`. Each is
/// drawn into a temporary file in `out` and renamed into place, so a figure is never left
/// half-written.
fn write_figure(
    out: &Path,
    stem: &str,
    figure: &impl Figure,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let (w, h) = figure.size();
    let svg = out.join(format!("{stem}.svg"));
    atomically(&svg, out.join(format!(".{stem}.tmp.svg")), |tmp| {
        let root = SVGBackend::new(tmp, (w, h)).into_drawing_area();
        figure.draw(&root, 1.0).and_then(|()| Ok(root.present()?))
    })?;
    files.push(svg);
    let png = out.join(format!("{stem}.png"));
    atomically(&png, out.join(format!(".{stem}.tmp.png")), |tmp| {
        let size = (w * PNG_SCALE, h * PNG_SCALE);
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        figure
            .draw(&root, f64::from(PNG_SCALE))
            .and_then(|()| Ok(root.present()?))
    })?;
    files.push(png);
    Ok(())
}

/// Runs `draw` on the temporary path `tmp` (whose extension tells plotters the format), then
/// renames it to `path`; removes `tmp` on failure.
fn atomically(path: &Path, tmp: PathBuf, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let result = draw(&tmp).and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The text style of `size` SVG pixels at scale `s`.
fn font(size: f64, s: f64) -> TextStyle<'static> {
    (FAMILY, size * s).into_font().color(&INK)
}

/// Draws `text` centred in a band `height` SVG pixels high at the top of `area`; returns
/// the rest of the area.
fn with_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    height: f64,
    s: f64,
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let (band, rest) = area.split_vertically(px(height, s));
    let (w, h) = band.dim_in_pixel();
    band.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, h as i32 / 2),
        font(size, s).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    Ok(rest)
}

/// `v` SVG pixels at scale `s`, in device pixels.
fn px(v: f64, s: f64) -> i32 {
    (v * s).round() as i32
}

/// `v` SVG pixels at scale `s`, in device pixels, unsigned.
fn upx(v: f64, s: f64) -> u32 {
    (v * s).round().max(0.0) as u32
}

/// The colour of `method`: fixed for the known methods, else by order among the others.
pub(crate) fn method_color(methods: &[String], method: &str) -> RGBColor {
    let known = |name: &str| MethodKind::ALL.iter().position(|m| m.id() == name);
    if let Some(i) = known(method) {
        return METHOD_COLORS[i];
    }
    let others = methods.iter().filter(|m| known(m).is_none());
    let k = others.take_while(|m| *m != method).count();
    OTHER_COLORS[k % OTHER_COLORS.len()]
}

/// The viridis colour of `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + f * (f64::from(y) - f64::from(x))).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour of task `j` of `tasks`: viridis without its lightest yellows.
fn task_color(j: usize, tasks: usize) -> RGBColor {
    if tasks <= 1 {
        viridis(0.0)
    } else {
        viridis(0.88 * j as f64 / (tasks - 1) as f64)
    }
}

/// Black or white, whichever reads better on `background`.
fn text_on(background: RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = background;
    let luminance = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    if luminance > 140.0 {
        RGBColor(0, 0, 0)
    } else {
        RGBColor(255, 255, 255)
    }
}

/// Tick positions at task boundaries 0..=tasks, at most about 10 of them.
fn task_ticks(tasks: usize) -> Vec<f64> {
    let step = tasks.div_ceil(10).max(1);
    let mut ticks: Vec<f64> = (0..=tasks).step_by(step).map(|t| t as f64).collect();
    if tasks % step != 0 {
        ticks.push(tasks as f64);
    }
    ticks
}

/// Decimals that tell apart ticks about `span / 5` apart.
fn decimals(span: f64) -> usize {
    let step = span / 5.0;
    if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        1
    } else {
        ((-step.log10()).ceil() as usize).clamp(1, 4)
    }
}

/// A linear axis over `lo..hi` with the ticks given (plotters' own `with_key_points` has no
/// default label formatting, which its mesh requires).
#[derive(Debug, Clone)]
struct Ticked {
    /// Lower end.
    lo: f64,
    /// Upper end.
    hi: f64,
    /// Where the ticks and labels go.
    ticks: Vec<f64>,
}

impl Ticked {
    /// The axis `lo..hi` with `ticks`.
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Self { lo, hi, ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let t = (v - self.lo) / span;
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.max_num_points() == 0 {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// `v` with `digits` decimals, without the sign of a negative zero.
fn tick_label(v: f64, digits: usize) -> String {
    let text = format!("{v:.digits$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// How a legend entry shows its colour.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// A filled square (bars).
    Square,
    /// A line with a dot (curves).
    Line,
}

/// Legend text size, in SVG pixels.
const LEGEND_FONT: f64 = 13.0;
/// Width of a legend swatch, in SVG pixels.
const SWATCH: f64 = 22.0;

/// Approximate width of a legend entry, in SVG pixels (DejaVu Sans averages ~0.6 em).
fn entry_width(label: &str) -> f64 {
    SWATCH + 6.0 + 0.62 * LEGEND_FONT * label.chars().count() as f64 + 22.0
}

/// Splits legend entries into lines at most `width` SVG pixels wide.
fn legend_lines(labels: &[String], width: f64) -> Vec<Vec<usize>> {
    let mut lines: Vec<Vec<usize>> = Vec::new();
    let mut used = f64::INFINITY;
    for (i, label) in labels.iter().enumerate() {
        let w = entry_width(label);
        if used + w > width {
            lines.push(Vec::new());
            used = 0.0;
        }
        used += w;
        if let Some(line) = lines.last_mut() {
            line.push(i);
        }
    }
    lines
}

/// Height of one legend line, in SVG pixels.
const LEGEND_LINE: f64 = 24.0;

/// Draws a colour swatch with its left edge at `x`, centred on `y` (device pixels).
fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    mark: Mark,
    color: RGBColor,
    (x, y): (i32, i32),
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    match mark {
        Mark::Square => {
            let half = px(6.0, s);
            let left = x + px(SWATCH / 2.0, s) - half;
            area.draw(&Rectangle::new(
                [(left, y - half), (left + 2 * half, y + half)],
                color.filled(),
            ))?;
        }
        Mark::Line => {
            area.draw(&PathElement::new(
                vec![(x, y), (x + px(SWATCH, s), y)],
                color.stroke_width(upx(2.5, s)),
            ))?;
            area.draw(&Circle::new(
                (x + px(SWATCH / 2.0, s), y),
                px(3.5, s),
                color.filled(),
            ))?;
        }
    }
    Ok(())
}

/// Draws a legend of `entries` as centred lines across `area`.
fn draw_legend_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    mark: Mark,
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let labels: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
    let style = font(LEGEND_FONT, s).pos(Pos::new(HPos::Left, VPos::Center));
    for (row, line) in legend_lines(&labels, f64::from(w) / s).iter().enumerate() {
        let total: f64 = line.iter().map(|&i| entry_width(&labels[i])).sum::<f64>() - 22.0;
        let mut x = (f64::from(w) / s - total) / 2.0;
        let y = px(LEGEND_LINE * (row as f64 + 0.5), s);
        for &i in line {
            let (label, color) = &entries[i];
            draw_swatch(area, mark, *color, (px(x, s), y), s)?;
            area.draw(&Text::new(
                label.clone(),
                (px(x + SWATCH + 6.0, s), y),
                style.clone(),
            ))?;
            x += entry_width(label);
        }
    }
    Ok(())
}

/// Draws a vertical legend of `entries` at the top left of `area`, then `notes` below it.
fn draw_legend_column<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    notes: &[String],
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let style = font(LEGEND_FONT, s).pos(Pos::new(HPos::Left, VPos::Center));
    let top = 60.0;
    for (k, (label, color)) in entries.iter().enumerate() {
        let y = px(top + LEGEND_LINE * k as f64, s);
        draw_swatch(area, Mark::Line, *color, (px(4.0, s), y), s)?;
        area.draw(&Text::new(
            label.clone(),
            (px(SWATCH + 12.0, s), y),
            style.clone(),
        ))?;
    }
    let note_style = font(11.0, s).pos(Pos::new(HPos::Left, VPos::Center));
    let below = top + LEGEND_LINE * entries.len() as f64 + 8.0;
    for (k, note) in notes.iter().enumerate() {
        area.draw(&Text::new(
            note.clone(),
            (px(4.0, s), px(below + 16.0 * k as f64, s)),
            note_style.clone(),
        ))?;
    }
    Ok(())
}

/// The legend entries of the methods of `groups`, with their number of seeds.
fn method_entries(model: &Model, groups: &[&Group]) -> Vec<(String, RGBColor)> {
    groups
        .iter()
        .map(|g| {
            let seeds = g.runs.len();
            let label = if seeds > 1 {
                format!("{} ({seeds} seeds)", g.method)
            } else {
                g.method.clone()
            };
            (label, method_color(&model.methods, &g.method))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Figure 1: ACC, BWT, FWT per method and benchmark

/// Figure 1: per benchmark, three small bar charts (ACC, BWT, FWT), one bar per method;
/// bars are means over seeds, error bars ± one standard deviation.
struct MetricsFigure<'a> {
    /// What to show.
    model: &'a Model,
}

/// Width of one bar chart, in SVG pixels.
const BARS_W: u32 = 190;
/// Height of one benchmark's panel, in SVG pixels.
const BARS_H: u32 = 300;

impl MetricsFigure<'_> {
    /// Panel columns and rows.
    fn grid(&self) -> (u32, u32) {
        let n = self.model.benchmarks.len().max(1) as u32;
        let cols = n.min(3);
        (cols, n.div_ceil(cols))
    }

    /// The legend entries: every method, in order.
    fn entries(&self) -> Vec<(String, RGBColor)> {
        let m = &self.model.methods;
        m.iter().map(|x| (x.clone(), method_color(m, x))).collect()
    }

    /// Width of the panels, in SVG pixels.
    fn panels_width(&self) -> u32 {
        self.grid().0 * 3 * BARS_W + 20
    }

    /// Height of the legend, in SVG pixels.
    fn legend_height(&self) -> f64 {
        let labels: Vec<String> = self.entries().into_iter().map(|e| e.0).collect();
        let lines = legend_lines(&labels, f64::from(self.panels_width())).len();
        LEGEND_LINE * lines as f64 + 12.0
    }
}

impl Figure for MetricsFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (_, rows) = self.grid();
        (
            self.panels_width(),
            rows * BARS_H + self.legend_height().ceil() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (cols, rows) = self.grid();
        let (panels, legend) = root.split_vertically(px(f64::from(rows * BARS_H), s));
        let panels = panels.margin(px(6.0, s), 0, px(10.0, s), px(10.0, s));
        let cells = panels.split_evenly((rows as usize, cols as usize));
        for (k, (benchmark, cell)) in self.model.benchmarks.iter().zip(&cells).enumerate() {
            if k % cols as usize != 0 {
                let (_, h) = cell.dim_in_pixel();
                cell.draw(&PathElement::new(
                    vec![(0, px(4.0, s)), (0, h as i32 - px(12.0, s))],
                    GRID.stroke_width(upx(1.0, s)),
                ))?;
            }
            let cell = cell.margin(0, 0, px(8.0, s), px(8.0, s));
            let cell = with_title(&cell, benchmark, 16.0, 26.0, s)?;
            let groups: Vec<&Group> = self.model.groups_of(benchmark).collect();
            let charts = cell.split_evenly((1, 3));
            for (name, chart) in ["ACC", "BWT", "FWT"].iter().zip(&charts) {
                let bars: Vec<(RGBColor, Option<Stat>)> = groups
                    .iter()
                    .map(|g| {
                        let stat = match *name {
                            "ACC" => Some(g.acc),
                            "BWT" => g.bwt,
                            _ => g.fwt,
                        };
                        (method_color(&self.model.methods, &g.method), stat)
                    })
                    .collect();
                let fixed = (*name == "ACC").then_some((0.0, 1.0));
                bar_chart(chart, name, &bars, fixed, s)?;
            }
        }
        let legend = legend.margin(px(4.0, s), 0, 0, 0);
        draw_legend_rows(&legend, &self.entries(), Mark::Square, s)
    }
}

/// The value range of a bar chart: zero, every bar and its error bar, with some headroom.
fn bar_range(bars: &[(RGBColor, Option<Stat>)]) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for st in bars.iter().filter_map(|b| b.1) {
        lo = lo.min(st.mean - st.std);
        hi = hi.max(st.mean + st.std);
    }
    let span = hi - lo;
    if span < 1e-6 {
        return (-0.05, 0.05);
    }
    let pad = 0.1 * span;
    (
        if lo < 0.0 { lo - pad } else { 0.0 },
        if hi > 0.0 { hi + pad } else { 0.0 },
    )
}

/// One small bar chart: a bar per entry (mean) with an error bar (± std) when n > 1.
fn bar_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(RGBColor, Option<Stat>)],
    fixed: Option<(f64, f64)>,
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = fixed.unwrap_or_else(|| bar_range(bars));
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(14.0, s))
        .margin_top(px(2.0, s))
        .margin_bottom(px(8.0, s))
        .margin_left(px(2.0, s))
        .margin_right(px(12.0, s))
        .x_label_area_size(px(4.0, s))
        .y_label_area_size(px(48.0, s))
        .build_cartesian_2d(-0.6..n - 0.4, lo..hi)?;
    let digits = decimals(hi - lo);
    let y_format = |v: &f64| tick_label(*v, digits);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&y_format)
        .label_style(font(11.0, s))
        .bold_line_style(GRID.stroke_width(upx(1.0, s)))
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS.stroke_width(upx(1.0, s)))
        .set_all_tick_mark_size(px(3.0, s))
        .draw()?;
    if lo < 0.0 {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(-0.6, 0.0), (n - 0.4, 0.0)],
            AXIS.stroke_width(upx(1.0, s)),
        )))?;
    }
    let bar = AXIS.stroke_width(upx(1.5, s));
    for (i, (color, stat)) in bars.iter().enumerate() {
        let x = i as f64;
        let Some(st) = stat else {
            chart.draw_series(std::iter::once(Text::new(
                "n/a",
                (x, lo + 0.05 * (hi - lo)),
                font(10.0, s).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
            continue;
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.38, 0.0), (x + 0.38, st.mean)],
            color.filled(),
        )))?;
        if st.n > 1 {
            let (a, b) = (st.mean - st.std, st.mean + st.std);
            chart.draw_series([
                PathElement::new(vec![(x, a), (x, b)], bar),
                PathElement::new(vec![(x - 0.14, a), (x + 0.14, a)], bar),
                PathElement::new(vec![(x - 0.14, b), (x + 0.14, b)], bar),
            ])?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 2: accuracy on the first task, and on each task, as training proceeds

/// Figure 2 (left of the paper's): accuracy on the first task against tasks trained, one
/// line per method (mean over seeds, band ± one standard deviation).
struct CurveFigure<'a> {
    /// Colours and method order.
    model: &'a Model,
    /// The benchmark shown.
    benchmark: &'a str,
    /// Its groups, in method order.
    groups: &'a [&'a Group],
}

/// [`CurveFigure`] shows spread bands only up to this many methods.
pub(crate) const MAX_BANDS: usize = 4;

/// Width of the legend column of [`CurveFigure`], in SVG pixels.
const CURVE_LEGEND_W: f64 = 190.0;

impl Figure for CurveFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (820, 470)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, _) = root.dim_in_pixel();
        let (plot, legend) = root.split_horizontally(w as i32 - px(CURVE_LEGEND_W, s));
        let tasks = self.groups.iter().map(|g| g.tasks).max().unwrap_or(1);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("{}: accuracy on the first task", self.benchmark),
                font(16.0, s),
            )
            .margin(px(12.0, s))
            .x_label_area_size(px(42.0, s))
            .y_label_area_size(px(54.0, s))
            .build_cartesian_2d(Ticked::new(0.0, tasks as f64, task_ticks(tasks)), 0.0..1.0)?;
        curve_mesh(&mut chart, "test accuracy on task 1", 13.0, s)?;
        // Bands of more methods than this hide each other.
        let bands = self.groups.len() <= MAX_BANDS;
        for g in self.groups {
            let color = method_color(&self.model.methods, &g.method);
            let mean: Vec<(f64, f64)> = g
                .curve
                .iter()
                .map(|p| (p.x, p.accuracies[0].mean))
                .collect();
            if bands && g.runs.len() > 1 {
                let upper = g.curve.iter().map(|p| {
                    let a = p.accuracies[0];
                    (p.x, (a.mean + a.std).min(1.0))
                });
                let lower = g.curve.iter().rev().map(|p| {
                    let a = p.accuracies[0];
                    (p.x, (a.mean - a.std).max(0.0))
                });
                chart.draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    color.mix(0.18).filled(),
                )))?;
            }
            chart.draw_series(std::iter::once(PathElement::new(
                mean.clone(),
                color.stroke_width(upx(2.5, s)),
            )))?;
            chart.draw_series(
                mean.iter()
                    .filter(|(x, _)| x.fract() == 0.0)
                    .map(|&p| Circle::new(p, px(3.5, s), color.filled())),
            )?;
        }
        let mut notes = vec!["dots: task ends".to_string()];
        if bands && self.groups.iter().any(|g| g.runs.len() > 1) {
            notes.push("band: mean ± 1 std over seeds".to_string());
        }
        let entries = method_entries(self.model, self.groups);
        draw_legend_column(&legend, &entries, &notes, s)
    }
}

/// Axes of a curve chart: x = tasks trained (ticks at task boundaries), y = accuracy.
fn curve_mesh<DB: DrawingBackend, X>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    y_desc: &str,
    text: f64,
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_format = |v: &f64| format!("{v:.0}");
    let y_format = |v: &f64| format!("{v:.1}");
    chart
        .configure_mesh()
        .x_desc("tasks trained")
        .y_desc(y_desc)
        .x_label_formatter(&x_format)
        .y_labels(6)
        .y_label_formatter(&y_format)
        .label_style(font(text - 1.0, s))
        .axis_desc_style(font(text, s))
        .bold_line_style(GRID.stroke_width(upx(1.0, s)))
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS.stroke_width(upx(1.0, s)))
        .set_all_tick_mark_size(px(3.0, s))
        .draw()?;
    Ok(())
}

/// Figure 2 (right of the paper's): accuracy on every task against tasks trained, one small
/// panel per method, one line per task (mean over seeds).
struct EachTaskFigure<'a> {
    /// The benchmark shown.
    benchmark: &'a str,
    /// Its groups, in method order.
    groups: &'a [&'a Group],
}

/// Size of one panel of [`EachTaskFigure`], in SVG pixels.
const TASK_PANEL: (u32, u32) = (380, 280);
/// Height of the title and of the task colour key of [`EachTaskFigure`], in SVG pixels.
const TASK_TITLE_H: u32 = 34;
/// Height of the task colour key of [`EachTaskFigure`], in SVG pixels.
const TASK_KEY_H: u32 = 58;

impl EachTaskFigure<'_> {
    /// Panel columns and rows.
    fn grid(&self) -> (u32, u32) {
        let n = self.groups.len().max(1) as u32;
        let cols = n.min(3);
        (cols, n.div_ceil(cols))
    }

    /// The most tasks of any method.
    fn tasks(&self) -> usize {
        self.groups.iter().map(|g| g.tasks).max().unwrap_or(1)
    }
}

impl Figure for EachTaskFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (cols, rows) = self.grid();
        (
            (cols * TASK_PANEL.0).max(520),
            TASK_TITLE_H + rows * TASK_PANEL.1 + TASK_KEY_H,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (_, h) = root.dim_in_pixel();
        let (main, key) = root.split_vertically(h as i32 - px(f64::from(TASK_KEY_H), s));
        let title = format!(
            "{}: accuracy on each task as training proceeds",
            self.benchmark
        );
        let panels = with_title(&main, &title, 16.0, f64::from(TASK_TITLE_H), s)?;
        let (cols, rows) = self.grid();
        let cells = panels.split_evenly((rows as usize, cols as usize));
        for (g, cell) in self.groups.iter().zip(&cells) {
            let seeds = g.runs.len();
            let caption = if seeds > 1 {
                format!("{} (mean of {seeds} seeds)", g.method)
            } else {
                g.method.clone()
            };
            let mut chart = ChartBuilder::on(cell)
                .caption(caption, font(14.0, s))
                .margin(px(8.0, s))
                .margin_right(px(16.0, s))
                .x_label_area_size(px(38.0, s))
                .y_label_area_size(px(50.0, s))
                .build_cartesian_2d(
                    Ticked::new(0.0, g.tasks as f64, task_ticks(g.tasks)),
                    0.0..1.0,
                )?;
            curve_mesh(&mut chart, "test accuracy", 12.0, s)?;
            for j in 0..g.tasks {
                let points: Vec<(f64, f64)> = g
                    .curve
                    .iter()
                    .map(|p| (p.x, p.accuracies[j].mean))
                    .collect();
                let color = task_color(j, g.tasks);
                chart.draw_series(std::iter::once(PathElement::new(
                    points,
                    color.stroke_width(upx(1.8, s)),
                )))?;
            }
        }
        draw_task_key(&key, self.tasks(), s)
    }
}

/// A horizontal key of the task colours: a strip of one block per task, numbered.
fn draw_task_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    tasks: usize,
    s: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let block = (360.0 / tasks as f64).min(36.0);
    let strip = block * tasks as f64;
    let label_w = 90.0;
    let left = (f64::from(w) / s - strip - label_w) / 2.0 + label_w;
    let (top, height) = (12.0, 14.0);
    area.draw(&Text::new(
        "line colour = task",
        (px(left - 10.0, s), px(top + height / 2.0, s)),
        font(12.0, s).pos(Pos::new(HPos::Right, VPos::Center)),
    ))?;
    let every = (tasks as f64 * 22.0 / strip).ceil().max(1.0) as usize;
    for j in 0..tasks {
        let x0 = left + block * j as f64;
        area.draw(&Rectangle::new(
            [
                (px(x0, s), px(top, s)),
                (px(x0 + block, s), px(top + height, s)),
            ],
            task_color(j, tasks).filled(),
        ))?;
        let last_fits = (j % every) as f64 * block >= 22.0;
        if j % every == 0 || (j + 1 == tasks && last_fits) {
            area.draw(&Text::new(
                format!("{}", j + 1),
                (px(x0 + block / 2.0, s), px(top + height + 4.0, s)),
                font(11.0, s).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accuracy matrix

/// The accuracy matrix of one run as a heat map with a colour scale.
struct MatrixFigure<'a> {
    /// The run shown.
    run: &'a Run,
}

/// Width of the colour scale of [`MatrixFigure`], in SVG pixels.
const SCALE_W: f64 = 96.0;

impl Figure for MatrixFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (600, 540)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let run = self.run;
        let tasks = run.tasks();
        let t = tasks as f64;
        let title = format!(
            "{} on {}, seed {}: accuracy matrix",
            run.method, run.benchmark, run.seed
        );
        let area = with_title(root, &title, 16.0, 34.0, s)?;
        let (w, _) = area.dim_in_pixel();
        let (plot, scale) = area.split_horizontally(w as i32 - px(SCALE_W, s));
        let every = tasks.div_ceil(20);
        let ticks: Vec<f64> = (0..tasks).step_by(every).map(|j| j as f64 + 0.5).collect();
        let (top, bottom) = (10.0, 46.0);
        let mut chart = ChartBuilder::on(&plot)
            .margin_top(px(top, s))
            .margin_left(px(10.0, s))
            .margin_right(px(10.0, s))
            .x_label_area_size(px(bottom, s))
            .y_label_area_size(px(48.0, s))
            .build_cartesian_2d(
                Ticked::new(0.0, t, ticks.clone()),
                Ticked::new(0.0, t, ticks),
            )?;
        let x_format = |v: &f64| format!("{}", (v - 0.5).round() + 1.0);
        let y_format = |v: &f64| format!("{}", (t - v + 0.5).round());
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("evaluated task")
            .y_desc("after training task")
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style(font(12.0, s))
            .axis_desc_style(font(13.0, s))
            .axis_style(AXIS.stroke_width(upx(1.0, s)))
            .set_all_tick_mark_size(px(3.0, s))
            .draw()?;
        let (width, _) = chart.plotting_area().dim_in_pixel();
        let cell = f64::from(width) / s / t;
        for (i, row) in run.matrix.iter().enumerate() {
            let y = t - i as f64;
            for (j, &value) in row.iter().enumerate() {
                let x = j as f64;
                let color = viridis(value);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y - 1.0), (x + 1.0, y)],
                    color.filled(),
                )))?;
                if cell >= 34.0 {
                    let size = (cell / 4.2).min(14.0);
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{value:.2}"),
                        (x + 0.5, y - 0.5),
                        font(size, s)
                            .color(&text_on(color))
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )))?;
                }
            }
        }
        let mut bar = ChartBuilder::on(&scale)
            .margin_top(px(top, s))
            .margin_bottom(px(bottom, s))
            .margin_left(px(8.0, s))
            .margin_right(px(4.0, s))
            .right_y_label_area_size(px(48.0, s))
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        let y_format = |v: &f64| format!("{v:.1}");
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&y_format)
            .y_desc("accuracy")
            .label_style(font(12.0, s))
            .axis_desc_style(font(13.0, s))
            .axis_style(AXIS.stroke_width(upx(1.0, s)))
            .set_all_tick_mark_size(px(3.0, s))
            .draw()?;
        let steps = 200;
        bar.draw_series((0..steps).map(|k| {
            let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
            Rectangle::new([(0.0, a), (1.0, b)], viridis((a + b) / 2.0).filled())
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_middle() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(254, 232, 37));
        assert_eq!(viridis(-1.0), viridis(0.0));
        assert_eq!(viridis(2.0), viridis(1.0));
        let mid = viridis(0.5);
        assert!(mid.1 > 100 && mid.1 < 180, "{mid:?}");
    }

    #[test]
    fn method_colours_are_fixed_for_known_and_distinct_for_others() {
        let methods: Vec<String> = ["single", "gem", "alpha", "beta"]
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(method_color(&methods, "gem"), METHOD_COLORS[7]);
        assert_eq!(method_color(&[], "gem"), METHOD_COLORS[7]);
        let a = method_color(&methods, "alpha");
        let b = method_color(&methods, "beta");
        assert_ne!(a, b);
        assert!(!METHOD_COLORS.contains(&a) && !METHOD_COLORS.contains(&b));
    }

    #[test]
    fn task_ticks_cover_every_boundary_or_about_ten() {
        assert_eq!(task_ticks(5), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(task_ticks(20).len(), 11);
        assert_eq!(task_ticks(23).last(), Some(&23.0));
    }

    #[test]
    fn tick_labels_have_no_negative_zero() {
        assert_eq!(tick_label(-0.0001, 2), "0.00");
        assert_eq!(tick_label(-0.05, 2), "-0.05");
        assert_eq!(tick_label(0.1, 1), "0.1");
    }

    #[test]
    fn legend_wraps_when_too_wide() {
        let labels: Vec<String> = (0..8).map(|i| format!("method{i}")).collect();
        assert_eq!(legend_lines(&labels, 10_000.0).len(), 1);
        let lines = legend_lines(&labels, 300.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), (0..8).collect::<Vec<_>>());
    }
}
