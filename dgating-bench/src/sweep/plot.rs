//! Plots of a sweep with `plotters`: per task, the held-out metric against kept groups,
//! parameters and FLOPs (and, after fine-tuning, against kept groups); one colour per method,
//! the seed spread as error bars; SVG and PNG. The PNG text uses the DejaVu Sans font shipped
//! in `assets/` (no system fonts needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::sweep::report::Setting;
use crate::sweep::spec::Method;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font (tested by `plots_are_written`).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn colour(m: Method) -> RGBColor {
    match m {
        Method::Dgating => RGBColor(214, 39, 40),
        Method::Direct => RGBColor(31, 119, 180),
        Method::Prox => RGBColor(44, 160, 44),
        Method::Magnitude => RGBColor(148, 103, 189),
        Method::Dense => RGBColor(90, 90, 90),
        Method::L1Filter => RGBColor(255, 127, 14),
        Method::Slimming => RGBColor(140, 86, 75),
    }
}

/// Which quantity goes on the x axis.
#[derive(Debug, Clone, Copy)]
enum Axis {
    Kept,
    Params,
    Flops,
}

impl Axis {
    fn of(self, s: &Setting) -> f64 {
        match self {
            Axis::Kept => s.kept_fraction.mean,
            Axis::Params => s.params.mean,
            Axis::Flops => s.flops.mean,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Axis::Kept => "fraction of groups kept",
            Axis::Params => "parameters (compacted)",
            Axis::Flops => "FLOPs per sample (compacted)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Axis::Kept => "kept",
            Axis::Params => "params",
            Axis::Flops => "flops",
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    task: &str,
    settings: &[&Setting],
    axis: Axis,
    finetuned: bool,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Debug| format!("{e:?}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let y = |s: &Setting| if finetuned { s.metric_finetuned } else { Some(s.metric) };
    let pts: Vec<(f64, f64, f64)> = settings.iter().filter_map(|s| y(s).map(|m| (axis.of(s), m.mean, m.std))).collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (xmin, xmax) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) =
        pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1 - p.2), b.max(p.1 + p.2)));
    let pad = |a: f64, b: f64| {
        let d = (b - a).abs().max(1e-3 * b.abs().max(1e-9));
        (a - 0.05 * d, b + 0.05 * d)
    };
    let (x0, x1) = pad(xmin, xmax);
    let (y0, y1) = pad(ymin, ymax);
    let metric = settings.first().map(|s| s.metric_name.as_str()).unwrap_or("metric");
    let title = format!("{task}: held-out {metric}{}", if finetuned { " after fine-tuning" } else { "" });
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc(axis.label()).y_desc(metric).draw().map_err(|e| err(&e))?;
    for method in [
        Method::Dense,
        Method::Magnitude,
        Method::L1Filter,
        Method::Slimming,
        Method::Direct,
        Method::Prox,
        Method::Dgating,
    ] {
        let c = colour(method);
        let mut ms: Vec<(f64, f64, f64)> = settings
            .iter()
            .filter(|s| s.method == method)
            .filter_map(|s| y(s).map(|m| (axis.of(s), m.mean, m.std)))
            .collect();
        if ms.is_empty() {
            continue;
        }
        ms.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(ms.iter().map(|&(x, m, s)| ErrorBar::new_vertical(x, m - s, m, m + s, c.stroke_width(1), 6)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(ms.iter().map(|&(x, m, _)| Circle::new((x, m), 4, c.filled())))
            .map_err(|e| err(&e))?
            .label(method.name())
            .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes every plot of every task into `out` (`TASK-metric-vs-AXIS[-finetuned].{svg,png}`)
/// and returns their paths.
pub fn plot_all(settings: &[Setting], out: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let tasks: std::collections::BTreeSet<&str> = settings.iter().map(|s| s.task.as_str()).collect();
    let mut files = vec![];
    for task in tasks {
        let mine: Vec<&Setting> = settings.iter().filter(|s| s.task == task).collect();
        for (axis, finetuned) in [(Axis::Kept, false), (Axis::Params, false), (Axis::Flops, false), (Axis::Kept, true)]
        {
            if finetuned && mine.iter().all(|s| s.metric_finetuned.is_none()) {
                continue;
            }
            let stem = format!("{task}-metric-vs-{}{}", axis.slug(), if finetuned { "-finetuned" } else { "" });
            let svg = out.join(format!("{stem}.svg"));
            let png = out.join(format!("{stem}.png"));
            let fail = |p: &Path, m: String| Error::InvalidConfig(format!("plot {}: {m}", p.display()));
            draw(SVGBackend::new(&svg, (800, 560)).into_drawing_area(), task, &mine, axis, finetuned)
                .map_err(|m| fail(&svg, m))?;
            draw(BitMapBackend::new(&png, (800, 560)).into_drawing_area(), task, &mine, axis, finetuned)
                .map_err(|m| fail(&png, m))?;
            files.push(svg);
            files.push(png);
        }
    }
    Ok(files)
}
