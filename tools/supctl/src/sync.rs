//! `supctl sync`: Run Synchronization and the runs of a site.

use super::*;

pub(crate) fn run_json(r: &v1::SyncRun) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "site": r.site, "server": r.server, "state": sync_state(r.state),
        "trigger": r.trigger, "full": r.full, "epoch": r.epoch, "updates": r.updates,
        "started": output::time(r.started.as_ref()), "finished": output::time(r.finished.as_ref()),
        "error": if r.error.is_empty() { serde_json::Value::Null } else { r.error.clone().into() },
    })
}

pub(crate) async fn sync(ctx: &Context, command: SyncCommand) -> Result<(), Failure> {
    use sup_proto::v1::scheduler_client::SchedulerClient;
    let channel = ctx
        .channel(&ctx.scheduler, "scheduler", "sup.v1.Scheduler")
        .await?;
    let mut c = SchedulerClient::new(channel)
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    match command {
        SyncCommand::Run {
            site,
            full,
            wait,
            timeout,
        } => {
            let run = ctx
                .change(
                    v1::RunSyncRequest {
                        site: site.clone(),
                        op_id: op_id(),
                        full,
                    },
                    |r| {
                        let mut c = c.clone();
                        async move { c.run_sync(r).await }
                    },
                )
                .await?;
            println!(
                "{site}: {} synchronization {} started on {} (epoch {})",
                if full { "full" } else { "delta" },
                run.id,
                if run.server.is_empty() {
                    "-"
                } else {
                    &run.server
                },
                run.epoch
            );
            if !wait {
                return Ok(());
            }
            let deadline = Instant::now() + timeout;
            let mut last = String::new();
            loop {
                let runs = c
                    .list_sync_runs(v1::ListSyncRunsRequest {
                        site: site.clone(),
                        limit: 50,
                    })
                    .await?
                    .into_inner()
                    .runs;
                for r in runs.iter().filter(|r| r.id == run.id) {
                    let state = sync_state(r.state).to_string();
                    if state != last {
                        println!(
                            "{}  {state}{}",
                            r.id,
                            if r.error.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", r.error)
                            }
                        );
                        last = state.clone();
                    }
                    match r.state {
                        x if x == v1::SyncState::Succeeded as i32 => return Ok(()),
                        x if x == v1::SyncState::Failed as i32 => {
                            return Err(Failure {
                                code: 1,
                                message: format!("synchronization failed: {}", r.error),
                            });
                        }
                        _ => {}
                    }
                }
                if Instant::now() > deadline {
                    return Err(Failure {
                        code: 1,
                        message: "timed out waiting for the synchronization".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        SyncCommand::History {
            site,
            limit,
            output,
        } => {
            let runs = c
                .list_sync_runs(v1::ListSyncRunsRequest { site, limit })
                .await?
                .into_inner()
                .runs;
            let json = serde_json::Value::Array(runs.iter().map(run_json).collect()).to_string();
            let names: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
            format::print(output, &json, &names, |wide| {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        let mut row = vec![
                            r.id.clone(),
                            sync_state(r.state).to_string(),
                            r.trigger.clone(),
                            r.full.to_string(),
                            output::time(r.started.as_ref()).unwrap_or_default(),
                            output::time(r.finished.as_ref()).unwrap_or_default(),
                            r.server.clone(),
                            r.error.clone(),
                        ];
                        if wide {
                            row.extend([
                                r.site.clone(),
                                r.epoch.to_string(),
                                r.updates.to_string(),
                            ]);
                        }
                        row
                    })
                    .collect();
                let mut header = vec![
                    "RUN", "STATE", "TRIGGER", "FULL", "STARTED", "FINISHED", "SERVER", "ERROR",
                ];
                if wide {
                    header.extend(["SITE", "EPOCH", "UPDATES"]);
                }
                table::render(&header, &rows, "")
            })?;
            Ok(())
        }
    }
}
