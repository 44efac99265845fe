//! WSUS 3.0 on the wire, from the client's side: the ASMX endpoints and their namespaces, the
//! anonymous SOAP calls that make good probes (MS-WSUSSS GetAuthConfig, MS-WUSP GetConfig), and
//! the probe ladder a health checker runs against a SUP, each step classified
//! `ok | connect_failed | tls_failed | timeout | html_error | soap_fault | bad_response`.
//!
//! **Architecture invariant:** no NATS, no knowledge of sites or roles; it probes a host and port.

pub mod probe;

pub const NS_SERVER_SYNC: &str = "http://www.microsoft.com/SoftwareDistribution";
pub const NS_CLIENT: &str = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService";
pub const NS_SIMPLE_AUTH: &str =
    "http://www.microsoft.com/SoftwareDistribution/Server/SimpleAuthWebService";
pub const NS_DSS_AUTH: &str =
    "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService";
pub const NS_REPORTING: &str = "http://www.microsoft.com/SoftwareDistribution";

pub const NS_API: &str =
    "http://www.microsoft.com/SoftwareDistribution/Server/ApiRemotingWebService";

pub const PATH_SERVER_SYNC: &str = "/ServerSyncWebService/ServerSyncWebService.asmx";
pub const PATH_CLIENT: &str = "/ClientWebService/client.asmx";
pub const PATH_SIMPLE_AUTH: &str = "/SimpleAuthWebService/SimpleAuth.asmx";
pub const PATH_DSS_AUTH: &str = "/DssAuthWebService/DssAuthWebService.asmx";
pub const PATH_REPORTING: &str = "/ReportingWebService/ReportingWebService.asmx";
pub const PATH_SELFUPDATE: &str = "/selfupdate/wuident.cab";
pub const PATH_API: &str = "/ApiRemoting30/WebService.asmx";

/// MS-WSUSSS 4, sample 1: GetAuthConfig (empty request).
pub fn get_auth_config() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body><GetAuthConfig xmlns=\"{NS_SERVER_SYNC}\" /></soap:Body></soap:Envelope>"
    )
}

/// MS-WUSP GetConfig with protocol version 1.0.
pub fn get_config() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetConfig xmlns=\"{NS_CLIENT}\"><protocolVersion>1.0</protocolVersion></GetConfig></soap:Body></soap:Envelope>"
    )
}
