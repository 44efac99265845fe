//! The gRPC face of the coordinator.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use sup_proto::v1::{self, coordinator_server::Coordinator as CoordinatorApi};
use tonic::{Request, Response, Status};

use crate::coordinator::Coordinator;

pub struct Api {
    pub inner: Coordinator,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::WatchedEvent, Status>> + Send + 'static>>;

fn op_id_of<T>(req: &Request<T>, given: &str) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    req.metadata()
        .get("x-op-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tonic::async_trait]
impl CoordinatorApi for Api {
    #[tracing::instrument(skip_all, fields(rpc.system = "grpc", rpc.method = "ApplySites"))]
    async fn apply_sites(
        &self,
        req: Request<v1::ApplySitesRequest>,
    ) -> Result<Response<v1::ApplySitesResponse>, Status> {
        let op_id = op_id_of(&req, &req.get_ref().op_id);
        let mut body = req.into_inner();
        body.op_id = op_id;
        Ok(Response::new(self.inner.apply_sites(body).await?))
    }

    async fn get_site(
        &self,
        req: Request<v1::GetSiteRequest>,
    ) -> Result<Response<v1::Site>, Status> {
        Ok(Response::new(
            self.inner.get_site(&req.into_inner().code).await?,
        ))
    }

    async fn list_sites(
        &self,
        _req: Request<v1::ListSitesRequest>,
    ) -> Result<Response<v1::ListSitesResponse>, Status> {
        let sites = self
            .inner
            .store
            .sites()
            .await
            .map_err(crate::error::ApiError::from)?;
        Ok(Response::new(v1::ListSitesResponse { sites }))
    }

    #[tracing::instrument(skip_all, fields(rpc.system = "grpc", rpc.method = "DeleteSite"))]
    async fn delete_site(
        &self,
        req: Request<v1::DeleteSiteRequest>,
    ) -> Result<Response<v1::DeleteSiteResponse>, Status> {
        let op_id = op_id_of(&req, &req.get_ref().op_id);
        Ok(Response::new(
            self.inner
                .delete_site(&req.into_inner().code, &op_id)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc.system = "grpc", rpc.method = "AddRole"))]
    async fn add_role(
        &self,
        req: Request<v1::AddRoleRequest>,
    ) -> Result<Response<v1::RoleStatus>, Status> {
        let op_id = op_id_of(&req, &req.get_ref().op_id);
        let mut body = req.into_inner();
        body.op_id = op_id;
        Ok(Response::new(self.inner.add_role(body).await?))
    }

    #[tracing::instrument(skip_all, fields(rpc.system = "grpc", rpc.method = "RemoveRole"))]
    async fn remove_role(
        &self,
        req: Request<v1::RemoveRoleRequest>,
    ) -> Result<Response<v1::RoleStatus>, Status> {
        let op_id = op_id_of(&req, &req.get_ref().op_id);
        let mut body = req.into_inner();
        body.op_id = op_id;
        Ok(Response::new(self.inner.remove_role(body).await?))
    }

    #[tracing::instrument(skip_all, fields(rpc.system = "grpc", rpc.method = "SetActive"))]
    async fn set_active(
        &self,
        req: Request<v1::SetActiveRequest>,
    ) -> Result<Response<v1::ActiveSlot>, Status> {
        let op_id = op_id_of(&req, &req.get_ref().op_id);
        let mut body = req.into_inner();
        body.op_id = op_id;
        Ok(Response::new(self.inner.set_active(body).await?))
    }

    async fn get_status(
        &self,
        req: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(
            self.inner.status(&req.into_inner().site).await?,
        ))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<v1::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let filter = if req.site.is_empty() {
            sup_bus::subjects::EVENTS_ALL.to_string()
        } else {
            sup_bus::subjects::events_of(&req.site)
        };
        let from = match (req.from_sequence, req.follow, req.tail) {
            (0, _, tail) if tail > 0 => {
                let last = self
                    .inner
                    .store
                    .bus
                    .last_event_sequence()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                Some(last.saturating_sub(u64::from(tail) - 1).max(1))
            }
            (0, true, _) => None,
            (0, false, _) => Some(1),
            (n, _, _) => Some(n),
        };
        let (stored, events) = self
            .inner
            .store
            .bus
            .watch_events(filter, from)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let follow = req.follow;
        if !follow && stored == 0 {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let stream = events.map(|r| {
            r.map(|w| v1::WatchedEvent {
                sequence: w.sequence,
                event: Some(w.event),
            })
            .map_err(|e| Status::internal(e.to_string()))
        });
        if follow {
            return Ok(Response::new(Box::pin(stream)));
        }
        // Without follow, the stream ends with the last event that was stored when the call
        // started: `take` ends it as that one is sent, without waiting for one more.
        let stored = usize::try_from(stored).unwrap_or(usize::MAX);
        Ok(Response::new(Box::pin(stream.take(stored))))
    }
}
