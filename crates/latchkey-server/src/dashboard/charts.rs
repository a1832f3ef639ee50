//! Usage charts: a sparkline per key in the list, and the key page's daily bars of allowed
//! and refused requests. The bars are HTML boxes, not an SVG scaled to fit, so their axis
//! labels stay readable on a phone.

use latchkey_service::keys::UsageDay;
use maud::{html, Markup};

fn total(day: &UsageDay) -> u64 {
    day.allowed + day.refused
}

/// A 30-day sparkline of all requests (allowed + refused), with the total beside it.
pub fn sparkline(days: &[UsageDay]) -> Markup {
    let totals: Vec<u64> = days.iter().map(total).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = 100.0 / (totals.len().max(2) - 1) as f64;
    let points: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(i, total)| format!("{:.1},{:.1}", i as f64 * step, 19.0 - (*total as f64 / max) * 18.0))
        .collect();
    let sum: u64 = totals.iter().sum();
    let label = format!("{sum} request{}", if sum == 1 { "" } else { "s" });
    html! {
        span.sparkline {
            svg width="80" height="20" viewBox="0 0 100 20" preserveAspectRatio="none" aria-hidden="true" {
                polyline points=(points.join(" ")) fill="none" stroke="#2451c7" stroke-width="1.5" {}
            }
            span.small { (label) }
        }
    }
}

/// The top of the y axis: the smallest 1, 2 or 5 × 10ⁿ at or above the busiest day, so
/// the labels are round numbers.
fn axis_top(max: u64) -> u64 {
    let mut scale = 1;
    loop {
        for step in [1, 2, 5] {
            if step * scale >= max {
                return step * scale;
            }
        }
        scale *= 10;
    }
}

/// Daily bars of allowed (green) and refused (red) requests with dated axes, or a plain
/// message when the key made no request at all.
pub fn usage_chart(days: &[UsageDay]) -> Markup {
    let allowed: u64 = days.iter().map(|d| d.allowed).sum();
    let refused: u64 = days.iter().map(|d| d.refused).sum();
    let summary = format!("Last {} days: {allowed} allowed, {refused} refused.", days.len());
    if allowed + refused == 0 {
        return html! {
            div.chart-empty data-testid="usage-empty" {
                p {
                    strong { "No requests in the last " (days.len()) " days." }
                    br;
                    "Requests made with this key, allowed or refused, show here a few seconds after they happen."
                }
            }
        };
    }
    let top = axis_top(days.iter().map(|d| d.allowed.max(d.refused)).max().unwrap_or(1));
    let height = |n: u64| format!("height:{:.1}%", n as f64 / top as f64 * 100.0);
    let label = |i: usize| days.get(i).map(|d| d.day.format("%-d %b").to_string()).unwrap_or_default();
    html! {
        figure.chart {
            div.chart-body role="img" aria-label=(summary) {
                div.y-axis aria-hidden="true" {
                    span { (top) }
                    span { @if top > 1 { (top / 2) } }
                    span { "0" }
                }
                div.plot {
                    @for day in days {
                        div.day title={ (day.day.format("%-d %b %Y")) ": " (day.allowed) " allowed, " (day.refused) " refused" } {
                            span.bar.allowed style=(height(day.allowed)) {}
                            span.bar.refused style=(height(day.refused)) {}
                        }
                    }
                }
            }
            div.x-axis aria-hidden="true" {
                span { (label(0)) }
                span { (label(days.len() / 2)) }
                span { (label(days.len().saturating_sub(1))) " (today, UTC)" }
            }
            figcaption.legend {
                span { span.swatch style="background:#1b7f3b" {} "Allowed: " strong { (allowed) } }
                span { span.swatch style="background:#b3261e" {} "Refused: " strong { (refused) } }
                span.muted { "requests per day, last " (days.len()) " days" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::axis_top;

    #[test]
    fn the_axis_ends_on_a_round_number_at_or_above_the_busiest_day() {
        let tops: Vec<u64> = [1, 2, 3, 7, 10, 11, 480].into_iter().map(axis_top).collect();
        assert_eq!(tops, [1, 2, 5, 10, 10, 20, 500]);
    }
}
