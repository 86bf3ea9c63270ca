//! The state timeline picture of a run: one lane per backend, a colour per state,
//! marks for SIGHUPs (red lines) and operations (ticks), and a legend.

use std::fmt::Write;
use std::time::Duration;

use crate::lifecycle::{Moment, StateName};

use super::recorder::{Mark, Recorder};

/// Lanes drawn at most (the rest are summarised in the title).
pub const MAX_LANES: usize = 200;

fn colour(state: StateName) -> &'static str {
    match state {
        StateName::Uninitialized => "#d0d0d0",
        StateName::Initializing => "#8ecae6",
        StateName::Ready => "#52b788",
        StateName::FailedRecoverable => "#f4a261",
        StateName::FailedFatal => "#9d0208",
        StateName::Draining => "#ffd166",
        StateName::Reloading => "#7b2cbf",
        StateName::RollingBack => "#c77dff",
        StateName::Stopped => "#495057",
    }
}

/// Renders the timeline of `recorder` over `duration` as SVG.
pub fn render(recorder: &Recorder, duration: Duration, title: &str) -> String {
    let lanes: Vec<(&String, &Vec<(Moment, StateName)>)> =
        recorder.timeline.iter().take(MAX_LANES).collect();
    let (left, top, width, lane_h) = (110.0_f64, 40.0_f64, 1000.0_f64, 14.0_f64);
    let height = top + lane_h * lanes.len() as f64 + 60.0;
    let total = duration.as_secs_f64().max(1.0);
    let x = |m: Moment| left + width * (m.since_epoch().as_secs_f64() / total).min(1.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="10">"#,
        left + width + 20.0
    );
    let shown = if recorder.timeline.len() > MAX_LANES {
        format!(
            " (first {MAX_LANES} of {} backends)",
            recorder.timeline.len()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="13">{}{shown}</text>"#,
        escape(title)
    );
    for (row, (name, steps)) in lanes.iter().enumerate() {
        let y = top + lane_h * row as f64;
        let _ = writeln!(
            svg,
            r#"<text x="4" y="{}">{}</text>"#,
            y + lane_h - 4.0,
            escape(name)
        );
        for (i, (at, state)) in steps.iter().enumerate() {
            let end = steps.get(i + 1).map_or(Moment(duration), |(t, _)| *t);
            let (x0, x1) = (x(*at), x(end));
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>{name} {state} at {at}</title></rect>"#,
                (x1 - x0).max(0.5),
                lane_h - 2.0,
                colour(*state)
            );
        }
    }
    let bottom = top + lane_h * lanes.len() as f64;
    for (at, mark, backend) in &recorder.marks {
        match mark {
            Mark::Sighup => {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{0:.2}" x2="{0:.2}" y1="{top}" y2="{bottom}" stroke="#d00000" stroke-width="1"><title>SIGHUP at {at}</title></line>"##,
                    x(*at)
                );
            }
            Mark::Operation => {
                if let Some(row) = lanes.iter().position(|(n, _)| *n == backend) {
                    let y = top + lane_h * row as f64;
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{0:.2}" x2="{0:.2}" y1="{y:.1}" y2="{1:.1}" stroke="#000" stroke-width="0.6"/>"##,
                        x(*at),
                        y + 4.0
                    );
                }
            }
        }
    }
    let mut lx = left;
    for state in StateName::ALL {
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{state}</text>"#,
            bottom + 20.0,
            colour(state),
            lx + 14.0,
            bottom + 29.0
        );
        lx += 125.0;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="{}">red line: SIGHUP   black tick: operation   time axis: 0 to {}</text>"#,
        bottom + 48.0,
        humantime::format_duration(duration)
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
