//! Operations on sites, the Forja seed's unit that keys belong to. Any key sees its own
//! site; only a Master key creates, renames or deletes sites.

use crate::error::{ServiceError, ServiceResult};
use crate::listing::{PageRequest, Paged, MAX_PAGE_SIZE};
use crate::Service;
use latchkey_core::{AuditAction, AuditChange, AuditEvent, Caller, Denied, Site, SiteId, SiteName};
use latchkey_store::{truncate_to_millis, Audited, KeyFilter, Page};

/// The site operations; reached through [`Service::sites`].
pub struct Sites<'a> {
    pub(crate) service: &'a Service,
}

/// A site named in a filter: an id that cannot exist is a site nobody can see.
pub fn parse_site_filter(raw: &str) -> ServiceResult<SiteId> {
    SiteId::parse(raw).ok_or(ServiceError::Denied(Denied::SiteNotVisible))
}

impl Sites<'_> {
    /// Sites the caller can see, newest first: all for Master, its own for any other key.
    pub async fn list(&self, caller: &Caller, page: &PageRequest) -> ServiceResult<Paged<Site>> {
        let (store_page, limit) = page.to_store_page()?;
        let sites = if caller.is_master() {
            self.service.store.list_sites(&store_page).await?
        } else {
            let after = store_page.after.as_deref();
            self.own(caller)
                .await?
                .into_iter()
                .filter(|site| after.is_none_or(|after| site.id.as_str() < after))
                .collect()
        };
        Ok(Paged::cut(sites, limit, |site| site.id.to_string()))
    }

    /// Every site the caller can pick (a dashboard's site selector), newest first, all pages.
    pub async fn pickable(&self, caller: &Caller) -> ServiceResult<Vec<Site>> {
        let mut sites = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let next = self.list(caller, &page).await?;
            sites.extend(next.items);
            match next.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(sites),
            }
        }
    }

    async fn own(&self, caller: &Caller) -> ServiceResult<Option<Site>> {
        match &caller.site_id {
            Some(id) => Ok(self.service.store.get_site(id).await?),
            None => Ok(None),
        }
    }

    /// A site the caller cannot see is `SiteNotVisible` whether or not it exists, so ids
    /// cannot be probed; a Master asking for a missing site gets `NotFound`.
    pub async fn get(&self, caller: &Caller, id: &str) -> ServiceResult<Site> {
        let id = self.visible(caller, id)?;
        self.service.store.get_site(&id).await?.ok_or(ServiceError::NotFound("site"))
    }

    fn visible(&self, caller: &Caller, id: &str) -> ServiceResult<SiteId> {
        match SiteId::parse(id) {
            Some(id) if caller.can_view_site(&id) => Ok(id),
            _ if !caller.is_master() => Err(ServiceError::Denied(Denied::SiteNotVisible)),
            _ => Err(ServiceError::NotFound("site")),
        }
    }

    pub async fn create(&self, caller: &Caller, name: SiteName) -> ServiceResult<Site> {
        caller.may_manage_sites()?;
        let site = Site { id: SiteId::generate(), name, created_at: truncate_to_millis(self.service.now()) };
        let event = AuditEvent::new(&caller.actor, AuditAction::SiteCreated, site.created_at)
            .for_site(&site)
            .with_changes(AuditChange::created_named(site.name.as_str()));
        self.service.store.create_site(Audited { value: &site, event: &event }).await?;
        Ok(site)
    }

    /// Creates a site, refusing a name another site already has (ignoring case): two sites
    /// that differ only by id cannot be told apart in a site picker. The dashboard asks
    /// this; the JSON API still accepts duplicates (see `ensure_name_is_free`).
    pub async fn create_unique(&self, caller: &Caller, name: SiteName) -> ServiceResult<Site> {
        caller.may_manage_sites()?;
        self.ensure_name_is_free(caller, &name, None).await?;
        self.create(caller, name).await
    }

    /// Renames a site, refusing a name another site already has (ignoring case).
    pub async fn rename_unique(&self, caller: &Caller, id: &str, name: SiteName) -> ServiceResult<Site> {
        caller.may_manage_sites()?;
        self.ensure_name_is_free(caller, &name, Some(id)).await?;
        self.rename(caller, id, name).await
    }

    /// A check, not a constraint: two concurrent creations can still race past it. A
    /// unique index on the name (in both backends) would close that, and would let
    /// `create` itself refuse duplicates once the API's tests stop relying on them.
    async fn ensure_name_is_free(&self, caller: &Caller, name: &SiteName, except: Option<&str>) -> ServiceResult<()> {
        let wanted = name.as_str().to_lowercase();
        let taken = self
            .pickable(caller)
            .await?
            .iter()
            .any(|site| Some(site.id.as_str()) != except && site.name.as_str().to_lowercase() == wanted);
        if taken {
            return Err(ServiceError::Conflict(format!("a site named \"{}\" already exists", name.as_str())));
        }
        Ok(())
    }

    /// How many keys a site holds: what deleting it would delete with it.
    pub async fn key_count(&self, caller: &Caller, id: &str) -> ServiceResult<usize> {
        caller.may_manage_sites()?;
        let site = self.get(caller, id).await?;
        let filter = KeyFilter { site: Some(site.id), ..KeyFilter::default() };
        let mut page = Page { after: None, limit: 1000 };
        let mut count = 0;
        loop {
            let keys = self.service.store.list_keys(&filter, &page).await?;
            count += keys.len();
            match keys.last() {
                Some(last) if keys.len() == page.limit as usize => page.after = Some(last.id.to_string()),
                _ => return Ok(count),
            }
        }
    }

    pub async fn rename(&self, caller: &Caller, id: &str, name: SiteName) -> ServiceResult<Site> {
        caller.may_manage_sites()?;
        let before = self.get(caller, id).await?;
        let event = AuditEvent::new(&caller.actor, AuditAction::SiteUpdated, truncate_to_millis(self.service.now()))
            .for_site(&before)
            .with_changes(vec![AuditChange::renamed("name", before.name.as_str(), name.as_str())]);
        Ok(self.service.store.rename_site(&before.id, Audited { value: &name, event: &event }).await?)
    }

    /// Deletes a site and all its keys; each stops working before this returns.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<Site> {
        Ok(self.delete_counting_keys(caller, id).await?.0)
    }

    /// `delete`, also saying how many keys went with the site.
    pub async fn delete_counting_keys(&self, caller: &Caller, id: &str) -> ServiceResult<(Site, usize)> {
        caller.may_manage_sites()?;
        let site = self.get(caller, id).await?;
        let event = AuditEvent::new(&caller.actor, AuditAction::SiteDeleted, truncate_to_millis(self.service.now()))
            .for_site(&site)
            .with_changes(vec![AuditChange::removed(site.name.as_str())]);
        let deleted_keys = self.service.store.delete_site(&site.id, &event).await?;
        for key in &deleted_keys {
            self.service.cache.forget(&key.hash);
        }
        Ok((site, deleted_keys.len()))
    }
}
