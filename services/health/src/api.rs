//! The gRPC service: the stored reports (`GetHealth`) and a probe on demand (`ProbeNow`).

use super::*;

pub struct Api(pub Arc<HealthService>);

#[tonic::async_trait]
impl v1::health_service_server::HealthService for Api {
    async fn get_health(
        &self,
        req: Request<v1::GetHealthRequest>,
    ) -> Result<Response<v1::GetHealthResponse>, Status> {
        let r = req.into_inner();
        let reports = self
            .0
            .stored(&r.site, &r.server)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(v1::GetHealthResponse { reports }))
    }

    async fn probe_now(
        &self,
        req: Request<v1::ProbeNowRequest>,
    ) -> Result<Response<v1::HealthReport>, Status> {
        let r = req.into_inner();
        let targets = self
            .0
            .targets()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let t = targets
            .into_iter()
            .find(|t| t.server == r.server && (r.site.is_empty() || t.site == r.site))
            .ok_or_else(|| {
                Status::not_found(format!("{} is not an installed SUP role", r.server))
            })?;
        let report = self
            .0
            .probe(&t)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(report))
    }
}
