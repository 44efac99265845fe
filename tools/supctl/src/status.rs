//! `supctl status`: sites, active SUPs, roles and synchronization, once or, with `--watch`, again
//! after every event that changes them (the coordinator's WatchEvents stream, no polling).

use std::io::IsTerminal as _;

use clap::Args;
use sup_proto::v1;

use crate::format::{self, Format};
use crate::{Context, Failure, output};

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub site: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Print again whenever an event changes what is shown, until interrupted. On a terminal
    /// the screen is redrawn; otherwise each view follows the last (one JSON document per line
    /// with -o json).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// The view of `status` in `format`, as it is printed.
fn render(format: Format, status: &v1::StatusResponse) -> Result<String, Failure> {
    let names: Vec<String> = status
        .sites
        .iter()
        .filter_map(|s| s.site.as_ref().map(|site| site.code.clone()))
        .collect();
    format::render(format, &output::status_json(status), &names, |wide| {
        output::status_table(status, wide)
    })
}

pub async fn status(ctx: &Context, args: StatusArgs) -> Result<(), Failure> {
    let mut c = ctx.coordinator().await?;
    let site = args.site.clone().unwrap_or_default();
    let fetch = |mut c: crate::CoordinatorClient<sup_runtime::TracedChannel>, site: String| async move {
        Ok::<_, Failure>(
            c.get_status(v1::GetStatusRequest { site })
                .await?
                .into_inner(),
        )
    };
    // Watching starts before the first view, so no change falls between the two.
    let mut events = if args.watch {
        Some(
            c.watch_events(v1::WatchEventsRequest {
                site: site.clone(),
                from_sequence: 0,
                follow: true,
                tail: 0,
            })
            .await?
            .into_inner(),
        )
    } else {
        None
    };
    let mut shown = render(args.output, &fetch(c.clone(), site.clone()).await?)?;
    let terminal = std::io::stdout().is_terminal();
    show(&shown, terminal && args.watch);
    let Some(stream) = events.as_mut() else {
        return Ok(());
    };
    while stream.message().await?.is_some() {
        let view = render(args.output, &fetch(c.clone(), site.clone()).await?)?;
        if view != shown {
            if !terminal && args.output != Format::Json {
                println!();
            }
            show(&view, terminal);
            shown = view;
        }
    }
    Ok(())
}

fn show(view: &str, redraw: bool) {
    if redraw {
        // Clear the screen and go home, as `watch` does.
        print!("\x1b[2J\x1b[H");
    }
    print!("{view}");
}
