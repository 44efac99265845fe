//! The gRPC service: Run Synchronization, the runs, the synchronization status.

use super::*;

pub struct Api<C: Clock>(pub Arc<Scheduler<C>>);

#[tonic::async_trait]
impl<C: Clock> v1::scheduler_server::Scheduler for Api<C> {
    async fn run_sync(
        &self,
        req: Request<v1::RunSyncRequest>,
    ) -> Result<Response<v1::SyncRun>, Status> {
        let r = req.into_inner();
        let sites = self
            .0
            .sites()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let (_, site) = sites
            .into_iter()
            .find(|(pb, _)| pb.code == r.site)
            .ok_or_else(|| Status::not_found(format!("site {} is not applied", r.site)))?;
        if let Some(parent) = &site.parent {
            return Err(Status::failed_precondition(format!(
                "manual synchronization is not available on child sites in ConfigMgr 2007: {} synchronizes after its parent {parent}; run it there",
                site.code
            )));
        }
        match self.0.start_run(&site, "manual", r.full, &r.op_id).await {
            Ok(run) => Ok(Response::new(run)),
            Err(StartError::Busy(m)) => Err(Status::already_exists(m)),
            Err(StartError::Refused(m)) => Err(Status::failed_precondition(m)),
            Err(StartError::Bus(e)) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn list_sync_runs(
        &self,
        req: Request<v1::ListSyncRunsRequest>,
    ) -> Result<Response<v1::ListSyncRunsResponse>, Status> {
        let r = req.into_inner();
        let runs = self
            .0
            .history(&r.site, if r.limit == 0 { 50 } else { r.limit as usize })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(v1::ListSyncRunsResponse { runs }))
    }

    async fn get_sync_status(
        &self,
        req: Request<v1::GetSyncStatusRequest>,
    ) -> Result<Response<v1::SyncStatus>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.0
                .status(&r.site)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?,
        ))
    }
}
