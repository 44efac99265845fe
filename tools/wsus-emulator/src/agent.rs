//! The site-system agent over gRPC (`sup.v1.SiteSystemAgent`), as the provisioner's driver calls
//! it; a Windows agent would implement the same service against the SMS Provider.

use std::sync::Arc;

use sup_proto::v1::{self, site_system_agent_server::SiteSystemAgent};
use tonic::{Request, Response, Status};

use crate::state::Emulator;

pub struct Agent {
    pub emu: Arc<Emulator>,
}

fn need(server: &str) -> Result<(), Status> {
    if server.is_empty() {
        return Err(Status::invalid_argument("server is required"));
    }
    Ok(())
}

#[tonic::async_trait]
impl SiteSystemAgent for Agent {
    async fn get_wsus_info(
        &self,
        req: Request<v1::GetWsusInfoRequest>,
    ) -> Result<Response<v1::WsusInfo>, Status> {
        let r = req.into_inner();
        need(&r.server)?;
        Ok(Response::new(self.emu.wsus_info(&r.server)))
    }

    async fn install_role(
        &self,
        req: Request<v1::AgentInstallRoleRequest>,
    ) -> Result<Response<v1::AgentReply>, Status> {
        let r = req.into_inner();
        need(&r.server)?;
        Ok(Response::new(self.emu.install(r)))
    }

    async fn remove_role(
        &self,
        req: Request<v1::AgentRemoveRoleRequest>,
    ) -> Result<Response<v1::AgentReply>, Status> {
        let r = req.into_inner();
        need(&r.server)?;
        Ok(Response::new(self.emu.remove(r)))
    }

    async fn configure_component(
        &self,
        req: Request<v1::AgentConfigureRequest>,
    ) -> Result<Response<v1::AgentReply>, Status> {
        let r = req.into_inner();
        need(&r.server)?;
        Ok(Response::new(self.emu.configure(r)))
    }

    async fn start_sync(
        &self,
        req: Request<v1::AgentStartSyncRequest>,
    ) -> Result<Response<v1::AgentReply>, Status> {
        let r = req.into_inner();
        need(&r.server)?;
        Ok(Response::new(self.emu.start_sync(r)))
    }
}
