//! `index.html`: one self-contained page (inline CSS, figures by relative reference) with
//! the summary tables and every figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::figures::{each_task_stem, first_task_stem, FIG1, MAX_BANDS};
use super::{Model, Stat, SUMMARY_CSV};

/// The page's style sheet.
const STYLE: &str = "
body { font-family: 'DejaVu Sans', system-ui, sans-serif; color: #222; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; border-bottom: 2px solid #ccc; }
td.text, th.text { text-align: left; }
tr.first td { border-top: 2px solid #ccc; }
.spread { color: #777; font-size: 0.9em; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 60em; margin-top: 0.4em; }
.matrices { display: flex; flex-wrap: wrap; gap: 1em; }
.matrices figure { width: 380px; margin: 0; }
.links { font-size: 0.85em; color: #777; }
.note { color: #555; font-size: 0.92em; max-width: 60em; }
code { font-size: 0.95em; }
";

/// Escapes `text` for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value with three decimals; signed when `signed`.
fn number(v: f64, signed: bool) -> String {
    if signed {
        format!("{v:+.3}").replace('-', "−")
    } else {
        format!("{v:.3}")
    }
}

/// A table cell of a mean and its standard deviation, or a dash.
fn stat_cell(stat: Option<Stat>, signed: bool) -> String {
    match stat {
        None => "<td>—</td>".to_string(),
        Some(s) if s.n > 1 => format!(
            "<td>{} <span class=\"spread\">± {:.3}</span></td>",
            number(s.mean, signed),
            s.std
        ),
        Some(s) => format!("<td>{}</td>", number(s.mean, signed)),
    }
}

/// A table cell of one value, or a dash.
fn value_cell(v: Option<f64>, signed: bool) -> String {
    v.map_or_else(
        || "<td>—</td>".to_string(),
        |v| format!("<td>{}</td>", number(v, signed)),
    )
}

/// Seconds with a precision that suits their size.
fn seconds(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A cell of seconds, or a dash.
fn seconds_cell(stat: Option<Stat>) -> String {
    match stat {
        None => "<td>—</td>".to_string(),
        Some(s) if s.n > 1 => format!(
            "<td>{} <span class=\"spread\">± {}</span></td>",
            seconds(s.mean),
            seconds(s.std)
        ),
        Some(s) => format!("<td>{}</td>", seconds(s.mean)),
    }
}

/// The file name of `path`, for a relative reference.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A figure: the SVG shown, linking to the PNG, with a caption. Figures not in `written`
/// are left out.
fn figure(page: &mut String, written: &[String], stem: &str, alt: &str, caption: &str) {
    let (svg, png) = (format!("{stem}.svg"), format!("{stem}.png"));
    if !written.contains(&svg) {
        return;
    }
    let has_png = written.contains(&png);
    let _ = write!(
        page,
        "<figure><img src=\"{svg}\" alt=\"{alt}\"><figcaption>{caption} <span class=\"links\">[<a href=\"{svg}\">SVG</a>",
        svg = escape(&svg),
        alt = escape(alt),
    );
    if has_png {
        let _ = write!(page, " · <a href=\"{}\">PNG</a>", escape(&png));
    }
    page.push_str("]</span></figcaption></figure>\n");
}

/// The whole page. `files` are the files written so far (figures and CSV); the page
/// references each of them by its file name.
pub(crate) fn page(model: &Model, files: &[PathBuf]) -> String {
    let written: Vec<String> = files.iter().map(|p| file_name(p)).collect();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>episodic report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let seeds: std::collections::BTreeSet<u64> = model.runs.iter().map(|r| r.seed).collect();
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let _ = write!(
        page,
        "<h1>Continual-learning report</h1>\n<p class=\"note\">{runs} run(s): methods {methods}; \
         benchmarks {benchmarks}; seeds {seeds}.</p>\n\
         <p class=\"note\">Metrics as in Lopez-Paz &amp; Ranzato (2017), from the accuracy \
         matrix R (R<sub>i,j</sub>: test accuracy on task j after training task i) over T \
         tasks: <b>ACC</b> is the average final accuracy; <b>BWT</b> (backward transfer) the \
         average change of accuracy on a task from just after learning it to the end \
         (negative: forgetting); <b>FWT</b> (forward transfer) the average accuracy on a task \
         before training on it, relative to a freshly initialised network. BWT and FWT are \
         averaged over T − 1 tasks. With several seeds, values are the mean ± the sample \
         standard deviation over seeds (n − 1 denominator), and error bars and bands in the \
         figures show ± one standard deviation.</p>\n",
        runs = model.runs.len(),
        methods = escape(&model.methods.join(", ")),
        benchmarks = escape(&model.benchmarks.join(", ")),
        seeds = seeds.join(", "),
    );

    page.push_str("<h2>Summary</h2>\n");
    summary_table(&mut page, model);

    page.push_str("<h2>Figure 1: accuracy and transfer</h2>\n");
    figure(
        &mut page,
        &written,
        FIG1,
        "ACC, BWT and FWT per method and benchmark",
        "Average accuracy (ACC), backward transfer (BWT) and forward transfer (FWT) for each \
         method, one panel per benchmark. Bars show the mean over seeds; error bars ± one \
         standard deviation (only with several seeds).",
    );

    page.push_str("<h2>Figure 2: accuracy as training proceeds</h2>\n");
    for benchmark in &model.benchmarks {
        let _ = writeln!(page, "<h3>{}</h3>", escape(benchmark));
        figure(
            &mut page,
            &written,
            &first_task_stem(benchmark),
            &format!("accuracy on the first task of {benchmark}"),
            &format!(
                "Test accuracy on the first task as the tasks are learnt in sequence; x = tasks \
             trained (mini-batches ÷ mini-batches per task, so task boundaries fall on \
             integers). Lines are means over seeds; shaded bands (drawn for at most {MAX_BANDS} \
             methods) span ± one standard deviation; dots mark the evaluations at task ends."
            ),
        );
        figure(
            &mut page,
            &written,
            &each_task_stem(benchmark),
            &format!("accuracy on each task of {benchmark}"),
            "Test accuracy on every task over the stream, one panel per method, one line per \
             task (coloured from the first task, dark purple, to the last, green-yellow); \
             means over seeds.",
        );
    }

    page.push_str("<h2>Accuracy matrices</h2>\n<p class=\"note\">Per run: row i is the test accuracy on each task after training task i, so the diagonal is each task just learnt, cells above it are tasks not yet trained (forward transfer) and cells below it tasks learnt earlier (backward transfer).</p>\n<div class=\"matrices\">\n");
    for run in &model.runs {
        figure(
            &mut page,
            &written,
            &run.matrix_stem(),
            &format!(
                "accuracy matrix of {} on {}, seed {}",
                run.method, run.benchmark, run.seed
            ),
            &escape(&format!(
                "{} on {}, seed {}.",
                run.method, run.benchmark, run.seed
            )),
        );
    }
    page.push_str("</div>\n");

    page.push_str("<h2>Runs</h2>\n");
    runs_table(&mut page, model, &written);

    page.push_str("<p class=\"note\">");
    if written.iter().any(|f| f == SUMMARY_CSV) {
        let _ = write!(
            page,
            "The per-run table as CSV: <a href=\"{SUMMARY_CSV}\">{SUMMARY_CSV}</a>. "
        );
    }
    let _ = writeln!(
        page,
        "Written by <code>episodic report</code> {}.</p>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    page
}

/// Mean ± standard deviation per benchmark and method.
fn summary_table(page: &mut String, model: &Model) {
    page.push_str(
        "<table>\n<tr><th class=\"text\">benchmark</th><th class=\"text\">method</th>\
         <th>seeds</th><th>ACC</th><th>BWT</th><th>FWT</th><th>time (s)</th></tr>\n",
    );
    let mut previous: Option<&str> = None;
    for g in &model.groups {
        let first = previous != Some(g.benchmark.as_str());
        previous = Some(&g.benchmark);
        let _ =
            writeln!(
            page,
            "<tr{}><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td>{}{}{}{}</tr>",
            if first { " class=\"first\"" } else { "" },
            if first { escape(&g.benchmark) } else { String::new() },
            escape(&g.method),
            g.runs.len(),
            stat_cell(Some(g.acc), false),
            stat_cell(g.bwt, true),
            stat_cell(g.fwt, true),
            seconds_cell(g.seconds),
        );
    }
    page.push_str("</table>\n");
}

/// One row per run, linking its accuracy matrix.
fn runs_table(page: &mut String, model: &Model, written: &[String]) {
    page.push_str(
        "<table>\n<tr><th class=\"text\">method</th><th class=\"text\">benchmark</th>\
         <th>seed</th><th>ACC</th><th>BWT</th><th>FWT</th><th>time (s)</th>\
         <th class=\"text\">matrix</th><th class=\"text\">results file</th></tr>\n",
    );
    for run in &model.runs {
        let png = format!("{}.png", run.matrix_stem());
        let matrix = if written.contains(&png) {
            format!("<a href=\"{}\">PNG</a>", escape(&png))
        } else {
            String::new()
        };
        let _ = writeln!(
            page,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td>{}{}{}{}\
             <td class=\"text\">{matrix}</td><td class=\"text\"><code>{}</code></td></tr>",
            escape(&run.method),
            escape(&run.benchmark),
            run.seed,
            value_cell(Some(run.acc), false),
            value_cell(run.bwt, true),
            value_cell(run.fwt, true),
            seconds_cell(run.seconds.and_then(|v| Stat::of([v]))),
            escape(&run.path.display().to_string()),
        );
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn cells_show_mean_and_spread_only_with_several_seeds() {
        let one = Stat::of([0.5]);
        let two = Stat::of([0.1, -0.3]);
        assert_eq!(stat_cell(one, false), "<td>0.500</td>");
        assert_eq!(
            stat_cell(two, true),
            "<td>−0.100 <span class=\"spread\">± 0.283</span></td>"
        );
        assert_eq!(stat_cell(None, true), "<td>—</td>");
    }

    #[test]
    fn page_references_the_files_written_and_escapes_names() {
        let model = Model::new(vec![
            run("gem", "mnist-rotations", 0, 0.5),
            run("<b>", "mnist-rotations", 0, 0.5),
        ])
        .unwrap();
        let files: Vec<PathBuf> = [
            "fig1-metrics.svg",
            "fig1-metrics.png",
            "matrix-gem-mnist-rotations-seed0.svg",
            "matrix-gem-mnist-rotations-seed0.png",
            "summary.csv",
        ]
        .iter()
        .map(|f| PathBuf::from("out").join(f))
        .collect();
        let html = page(&model, &files);
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(html.contains(&format!("\"{name}\"")), "{name}");
        }
        assert!(!html.contains("<b>,") && html.contains("&lt;b&gt;"));
        assert!(!html.contains("fig2-first-task"), "not written, not shown");
        assert_eq!(html.matches("<table>").count(), 2);
    }
}
