//! SVG plots drawn with plotters' SVG backend and no fonts: plotters draws the lines and
//! frames, and the few labels are written as fixed-position SVG `<text>` elements, so the
//! bytes depend on the data alone, never on the fonts of the machine.

use crate::report::Report;
use plotters::prelude::*;

const W: u32 = 800;
const H: u32 = 400;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 40;
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart; `series` are (name, points) with x in seconds.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.05;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).expect("svg fill");
        let plot_w = (W - LEFT - RIGHT) as i32;
        let plot_h = (H - TOP - BOTTOM) as i32;
        let (x0, y0) = (LEFT as i32, TOP as i32);
        // Grid: quarters of each axis.
        for k in 0..=4 {
            let x = x0 + plot_w * k / 4;
            let y = y0 + plot_h * k / 4;
            let grey = RGBColor(220, 220, 220);
            root.draw(&PathElement::new(vec![(x, y0), (x, y0 + plot_h)], grey))
                .expect("svg grid");
            root.draw(&PathElement::new(vec![(x0, y), (x0 + plot_w, y)], grey))
                .expect("svg grid");
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + plot_w, y0 + plot_h)],
            BLACK.stroke_width(1),
        ))
        .expect("svg frame");
        let area = root.margin(TOP, BOTTOM, LEFT, RIGHT);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .expect("svg chart");
        for (i, (_, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .expect("svg series");
        }
        root.present().expect("svg present");
    }
    // Labels at fixed positions, in a generic font family (no metrics needed).
    let mut text = String::new();
    let t = |x: u32, y: u32, anchor: &str, size: u32, s: &str| {
        format!(
            "<text x=\"{x}\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"{size}\" text-anchor=\"{anchor}\">{}</text>\n",
            esc(s)
        )
    };
    text.push_str(&t(W / 2, 24, "middle", 16, title));
    text.push_str(&t(LEFT, H - 12, "start", 12, "0"));
    text.push_str(&t(
        W - RIGHT,
        H - 12,
        "end",
        12,
        &format!("{} {x_label}", fmt_num(x_max)),
    ));
    text.push_str(&t(LEFT - 6, TOP + 10, "end", 12, &fmt_num(y_max / 1.05)));
    text.push_str(&t(LEFT - 6, H - BOTTOM, "end", 12, "0"));
    text.push_str(&t(W / 2, H - 12, "middle", 12, x_label));
    text.push_str(&format!(
        "<text x=\"16\" y=\"{}\" font-family=\"sans-serif\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
        H / 2,
        H / 2,
        esc(y_label)
    ));
    for (i, (name, _)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let y = TOP + 16 + 16 * i as u32;
        text.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"4\" fill=\"rgb({},{},{})\"/>\n",
            LEFT + 10,
            y - 5,
            c.0,
            c.1,
            c.2
        ));
        text.push_str(&t(LEFT + 28, y, "start", 12, name));
    }
    match buf.rfind("</svg>") {
        Some(pos) => buf.insert_str(pos, &text),
        None => buf.push_str(&text),
    }
    buf
}

fn secs(t_ms: u64) -> f64 {
    t_ms as f64 / 1000.0
}

pub fn adoption(r: &Report) -> String {
    let versions: Vec<u64> = r
        .rows
        .last()
        .map(|x| x.shares.iter().map(|(v, _)| *v).collect())
        .unwrap_or_default();
    let series: Vec<(String, Vec<(f64, f64)>)> = versions
        .iter()
        .map(|v| {
            let pts = r
                .rows
                .iter()
                .map(|row| {
                    let s = row.shares.iter().find(|(x, _)| x == v).map_or(0.0, |x| x.1);
                    (secs(row.t_ms), s * 100.0)
                })
                .collect();
            (format!("version {v} or newer"), pts)
        })
        .collect();
    line_chart(
        &format!("{}: share of nodes at each version", r.scenario),
        "s (virtual)",
        "% of nodes",
        &series,
    )
}

pub fn bytes(r: &Report) -> String {
    let pts = r
        .rows
        .iter()
        .map(|row| (secs(row.t_ms), row.bytes_per_node_s))
        .collect();
    line_chart(
        &format!("{}: bytes sent per node per second", r.scenario),
        "s (virtual)",
        "bytes / node / s",
        &[("sent".to_string(), pts)],
    )
}

pub fn drift(r: &Report) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = r
        .drift_series
        .iter()
        .map(|(n, pts)| (n.clone(), pts.iter().map(|(t, v)| (secs(*t), *v)).collect()))
        .collect();
    line_chart(
        &format!("{}: drift over time", r.scenario),
        "s (virtual)",
        "drifted resources",
        &series,
    )
}

/// Per rollout version, the share of each wave's nodes that run it over time (one line per
/// wave), and the unhealthy share of the whole fleet: a good release climbs wave by wave, one
/// bake apart; a bad one rises in its first wave and falls back as the nodes roll back.
pub fn rollout(r: &Report) -> String {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (v, sizes) in &r.waves {
        for (k, size) in sizes.iter().enumerate() {
            let pts = r
                .rows
                .iter()
                .map(|row| {
                    let s = row
                        .waves
                        .iter()
                        .find(|(x, _)| x == v)
                        .and_then(|(_, w)| w.get(k))
                        .copied()
                        .unwrap_or(0.0);
                    (secs(row.t_ms), s * 100.0)
                })
                .collect();
            series.push((format!("v{v} wave {k} ({size} nodes)"), pts));
        }
    }
    let n = r.nodes.max(1) as f64;
    series.push((
        "unhealthy (% of all nodes)".to_string(),
        r.rows
            .iter()
            .map(|row| (secs(row.t_ms), row.unhealthy as f64 * 100.0 / n))
            .collect(),
    ));
    line_chart(
        &format!(
            "{}: share of each wave running the rolled-out version",
            r.scenario
        ),
        "s (virtual)",
        "% of the wave's nodes",
        &series,
    )
}
