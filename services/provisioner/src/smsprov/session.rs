//! One site's SMS Provider: its WinRM client, and the session of an edit of its site control
//! file (open and refresh, change, commit when the edit says so, release in every case).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sup_proto::v1;
use sup_smsprov::scf::{ComponentName, EmbeddedProperty, SysResUse};
use sup_smsprov::wmi as sms;
use sup_wsman::client::{Auth, Client, Password, WsmanError};
use sup_wsman::instance::{Instance, Value, class_uri};

use super::{ProviderSettings, classify, not_found, reply, session_options};
use crate::driver::DriverError;

pub(super) struct SiteProvider {
    pub(super) settings: ProviderSettings,
    pub(super) password: Password,
    pub(super) auth: Auth,
    pub(super) client: Client,
    pub(super) registry: Mutex<BTreeMap<String, Arc<Client>>>,
    /// One edit of a site's control file at a time from this process.
    pub(super) edit: tokio::sync::Mutex<()>,
}

impl SiteProvider {
    pub(super) fn err(&self, e: WsmanError) -> DriverError {
        classify(&self.settings.url, e)
    }

    pub(super) fn uri(site: &str, class: &str) -> String {
        class_uri(&sms::namespace(site), class)
    }

    pub(super) async fn invoke(
        &self,
        site: &str,
        method: &str,
        params: &[(&str, &str)],
        options: &[(String, String)],
    ) -> Result<Instance, DriverError> {
        let out = self
            .client
            .invoke(
                &Self::uri(site, sms::SITE_CONTROL_FILE),
                method,
                params,
                &[],
                options,
            )
            .await
            .map_err(|e| self.err(e))?;
        match out.text("ReturnValue").map(str::trim) {
            Some("0") | None => Ok(out),
            Some(code) => Err(DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: format!("SMS_SiteControlFile.{method} returned {code}"),
            }),
        }
    }

    /// Opens a session on `site`'s control file and refreshes it; the guard keeps this
    /// process's other edits of the site out until the session is closed.
    pub(super) async fn open(&self, site: &str) -> Result<Session<'_>, DriverError> {
        let guard = self.edit.lock().await;
        let out = self.invoke(site, "GetSessionHandle", &[], &[]).await?;
        let handle = out.text("SessionHandle").unwrap_or_default().to_string();
        if handle.is_empty() {
            return Err(DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: "GetSessionHandle returned no handle".into(),
            });
        }
        let options = session_options(&handle);
        let session = Session {
            _guard: guard,
            handle,
            options,
        };
        if let Err(e) = self
            .invoke(site, "RefreshSCF", &[("SiteCode", site)], &session.options)
            .await
        {
            self.release(site, &session).await;
            return Err(e);
        }
        Ok(session)
    }

    pub(super) async fn release(&self, site: &str, session: &Session<'_>) {
        if let Err(e) = self
            .invoke(
                site,
                "ReleaseSessionHandle",
                &[("SessionHandle", &session.handle)],
                &[],
            )
            .await
        {
            tracing::warn!(site, error = %e, "releasing a site control file session");
        }
    }

    /// Commits the session when the edit says so, and releases it in every case (a release
    /// without a commit discards the changes).
    pub(super) async fn close(
        &self,
        site: &str,
        session: Session<'_>,
        edit: Result<Edit, DriverError>,
    ) -> Result<v1::AgentReply, DriverError> {
        let commit = match edit {
            Ok(Edit::Commit(detail)) => Ok((detail, None)),
            Ok(Edit::CommitAt(detail, epoch)) => Ok((detail, Some(epoch))),
            Ok(Edit::Drop(r)) => Err(Ok(r)),
            Err(e) => Err(Err(e)),
        };
        let result = match commit {
            Ok((detail, epoch)) => {
                let mut options = session.options.clone();
                options.extend(
                    epoch.map(|e| ("wmi:ApplicationName".to_string(), application_name(e))),
                );
                self.invoke(site, "CommitSCF", &[("SiteCode", site)], &options)
                    .await
                    .map(|_| reply(true, detail))
            }
            Err(answer) => answer,
        };
        self.release(site, &session).await;
        result
    }

    pub(super) async fn query_one(
        &self,
        site: &str,
        wql: &str,
        options: &[(String, String)],
    ) -> Result<Option<Instance>, DriverError> {
        let items = self
            .client
            .query(&sms::namespace(site), wql, options)
            .await
            .map_err(|e| self.err(e))?;
        Ok(items.into_iter().next())
    }

    pub(super) async fn component(
        &self,
        site: &str,
        name: ComponentName,
        options: &[(String, String)],
    ) -> Result<Instance, DriverError> {
        let wql = format!(
            "SELECT * FROM SMS_SCI_Component WHERE ComponentName = '{}' AND SiteCode = '{site}' AND FileType = 2",
            name.as_str()
        );
        self.query_one(site, &wql, options)
            .await?
            .ok_or_else(|| DriverError::Refused {
                endpoint: self.settings.url.clone(),
                message: format!(
                    "site {site} has no {} in its site control file",
                    name.as_str()
                ),
            })
    }

    pub(super) async fn put_component(
        &self,
        site: &str,
        read: Instance,
        props: &[EmbeddedProperty],
        options: &[(String, String)],
    ) -> Result<(), DriverError> {
        let merged = sms::with_props(read, props);
        let parsed = sms::component_from_instance(&merged).ok_or_else(|| DriverError::Refused {
            endpoint: self.settings.url.clone(),
            message: "a component row without its ComponentName".into(),
        })?;
        self.client
            .put(
                &Self::uri(site, sms::COMPONENT),
                &sms::component_selectors(&parsed),
                &merged,
                options,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Creates a role row, or puts its settings over the existing one's.
    pub(super) async fn upsert_row(
        &self,
        site: &str,
        row: &SysResUse,
        options: &[(String, String)],
    ) -> Result<(), DriverError> {
        let uri = Self::uri(site, sms::SYS_RES_USE);
        let keys = sms::row_selectors(row);
        match self.client.get(&uri, &keys, options).await {
            Ok(read) => self
                .client
                .put(&uri, &keys, &sms::with_props(read, &row.props), options)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e)),
            Err(e) if not_found(&e) => self
                .client
                .create(&uri, &sms::row_to_instance(row), options)
                .await
                .map_err(|e| self.err(e)),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(super) fn registry_client(&self, server: &str) -> Result<Arc<Client>, DriverError> {
        let mut g = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.get(server) {
            return Ok(c.clone());
        }
        let url = self.settings.site_system_url(server);
        let c = Arc::new(
            Client::new(
                self.settings
                    .endpoint(url.clone(), &self.password, self.auth.clone()),
            )
            .map_err(|e| classify(&url, e))?,
        );
        g.insert(server.to_string(), c.clone());
        Ok(c)
    }
}

/// What an edit does at its end.
pub(super) enum Edit {
    /// Commit, and answer this detail.
    Commit(String),
    /// Commit a change that names the active SUP under this epoch of its slot.
    CommitAt(String, u64),
    /// Release without committing, and answer this.
    Drop(v1::AgentReply),
}

/// An open session of a site's control file.
pub(super) struct Session<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    pub(super) handle: String,
    pub(super) options: Vec<(String, String)>,
}

/// Subscribes exactly the given classifications and products (WSUS GUIDs) among the site's
/// categories that allow it.
pub(super) async fn subscribe(
    p: &SiteProvider,
    site: &str,
    classifications: &[String],
    products: &[String],
    options: &[(String, String)],
) -> Result<(), DriverError> {
    let items = p
        .client
        .query(
            &sms::namespace(site),
            "SELECT * FROM SMS_UpdateCategoryInstance",
            options,
        )
        .await
        .map_err(|e| p.err(e))?;
    let uri = SiteProvider::uri(site, sms::CATEGORY_INSTANCE);
    for i in items {
        let Some(row) = sms::category_from_instance(&i) else {
            continue;
        };
        let id = &row.subscription.unique_id;
        let want = match sms::category_type(id) {
            "UpdateClassification" => classifications
                .iter()
                .any(|c| id.ends_with(&format!(":{}", c.to_ascii_lowercase()))),
            "Product" => products
                .iter()
                .any(|c| id.ends_with(&format!(":{}", c.to_ascii_lowercase()))),
            _ => continue,
        };
        if want == row.subscription.subscribed || (want && !row.allow_subscription) {
            continue;
        }
        let mut put = i.clone();
        put.props.retain(|(k, _)| k != "IsSubscribed");
        put.push("IsSubscribed", Value::Text(want.to_string()));
        p.client
            .put(
                &uri,
                &[("CategoryInstanceID".to_string(), row.id.to_string())],
                &put,
                options,
            )
            .await
            .map_err(|e| p.err(e))?;
    }
    Ok(())
}

/// The `ApplicationName` context value of a commit (a context qualifier the SMS Provider records
/// for auditing, ConfigMgr SDK "Context Qualifiers"): who made the change, and under which epoch
/// of the slot, so the site's own audit trail can be held against the control plane's.
pub fn application_name(epoch: u64) -> String {
    format!("SUP control plane (epoch {epoch})")
}
