//! The audit trail: every change to a key or site, newest first, for Admins of the site
//! and for Master.

use crate::error::ServiceResult;
use crate::listing::{PageRequest, Paged};
use crate::Service;
use latchkey_core::{AuditAction, AuditEvent, Caller, KeyId, SiteId};
use latchkey_store::AuditFilter;

/// Which events a listing covers, besides the caller's own limits.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub site: Option<SiteId>,
    pub key: Option<KeyId>,
    pub action: Option<AuditAction>,
}

/// The audit operations; reached through [`Service::audit`].
pub struct Audit<'a> {
    pub(crate) service: &'a Service,
}

impl Audit<'_> {
    pub async fn list(
        &self,
        caller: &Caller,
        query: AuditQuery,
        page: &PageRequest,
    ) -> ServiceResult<Paged<AuditEvent>> {
        let filter =
            AuditFilter { site: caller.listing_scope(query.site.as_ref())?, key: query.key, action: query.action };
        let (store_page, limit) = page.to_store_page()?;
        let events = self.service.store.list_audit(&filter, &store_page).await?;
        Ok(Paged::cut(events, limit, |event| event.id.to_string()))
    }
}
