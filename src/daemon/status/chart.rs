//! The rows-per-hour chart: an inline SVG bar chart drawn by the server
//! (no script, no image request), one bar per hour ending with the
//! current one, a tooltip (`<title>`) per bar, the peak on the axis.

use super::html::esc;
use std::fmt::Write;

/// Width and height of the drawing, in SVG units.
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

/// Bars for the `hours` hours up to the one holding `now` (Unix seconds):
/// `points` are (hour start, rows), hours without loads are empty bars.
pub fn rows_per_hour(title: &str, points: &[(i64, u64)], now: i64, hours: usize) -> String {
    let last = now - now.rem_euclid(3600);
    let first = last - 3600 * (hours as i64 - 1);
    let mut bars = vec![0u64; hours];
    for &(hour, rows) in points {
        if hour >= first && hour <= last {
            bars[((hour - first) / 3600) as usize] += rows;
        }
    }
    let peak = bars.iter().copied().max().unwrap_or(0);
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / hours as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"{t}\"><title>{t}</title>\n",
        t = esc(title)
    );
    let base = TOP + plot_h;
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{}\" y2=\"{TOP}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{peak}</text><text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        WIDTH - 8.0,
        WIDTH - 8.0,
        LEFT - 6.0,
        TOP + 9.0,
        LEFT - 6.0,
    );
    for (i, &rows) in bars.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let h = if peak == 0 {
            0.0
        } else {
            (rows as f64 / peak as f64 * plot_h).max(if rows > 0 { 1.0 } else { 0.0 })
        };
        let start =
            chrono::DateTime::from_timestamp(first + 3600 * i as i64, 0).unwrap_or_default();
        let _ = writeln!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} UTC: {rows} rows</title></rect>",
            x + 1.0,
            base - h,
            (slot - 2.0).max(1.0),
            start.format("%Y-%m-%d %H:00"),
        );
        if i % 6 == 0 {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\">{}</text>",
                x + 1.0,
                HEIGHT - 6.0,
                start.format("%H:00")
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_hour_the_peak_full_height_and_old_hours_left_out() {
        let now = 1_800_000_000 + 1800; // half past an hour
        let this_hour = now - now % 3600;
        let svg = rows_per_hour(
            "rows of <job>",
            &[
                (this_hour, 500),
                (this_hour - 3600, 250),
                (this_hour - 3600 * 99, 9999),
            ],
            now,
            48,
        );
        assert_eq!(svg.matches("<rect").count(), 48);
        assert!(svg.contains("rows of &lt;job&gt;"));
        assert!(svg.contains(": 500 rows</title>"));
        assert!(svg.contains(": 250 rows</title>"));
        assert!(
            !svg.contains("9999"),
            "an hour outside the window is not drawn"
        );
        assert!(svg.contains(&format!("height=\"{:.1}\"", HEIGHT - TOP - BOTTOM)));
    }

    #[test]
    fn no_loads_draw_an_empty_axis() {
        let svg = rows_per_hour("none", &[], 1_800_000_000, 24);
        assert_eq!(svg.matches("height=\"0.0\"").count(), 24);
    }
}
