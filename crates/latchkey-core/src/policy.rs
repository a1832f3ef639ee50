//! Who may do what. The only place that compares permission levels: handlers ask these
//! functions and turn a `Denied` into an HTTP error; they never decide themselves.
//!
//! The rules come from the Forja seed: Read and Write keys are for the platform's own
//! API; only Admin and Master may view, create, block or delete keys; Admin is confined
//! to its own site and cannot touch Master keys; Master is system-wide.

use crate::audit::Actor;
use crate::ids::SiteId;
use crate::records::KeyRecord;
use crate::values::{Permission, Scopes};

/// Who is acting: the level and site the policy decides on, and the `Actor` that the
/// audit trail records. Every operation takes one; every front-end (API, dashboard, CLI)
/// builds it from a verified key, never from what a request claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub permission: Permission,
    pub site_id: Option<SiteId>,
    pub actor: Actor,
}

/// Why an action is refused. Each variant maps to one HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The caller's level is too low for this action (403).
    InsufficientPermission(&'static str),
    /// The target exists but must look as if it did not (404): an Admin probing key ids
    /// of other sites or of Master keys learns nothing.
    NotVisible,
    /// The request names a site the caller cannot see (403).
    SiteNotVisible,
    /// The request is well-formed but contradicts the model (422), e.g. a Master key with a site.
    Invalid(&'static str),
}

impl Caller {
    /// The server itself, acting with Master rights (the bootstrap key, leak reports).
    pub fn system() -> Self {
        Self { permission: Permission::Master, site_id: None, actor: Actor::system() }
    }

    pub fn is_master(&self) -> bool {
        self.permission == Permission::Master
    }

    fn is_admin_of(&self, site: &SiteId) -> bool {
        self.permission == Permission::Admin && self.site_id.as_ref() == Some(site)
    }

    /// `GET /sites/{id}` and the sites listing: Master sees all, others their own site.
    pub fn can_view_site(&self, site: &SiteId) -> bool {
        self.is_master() || self.site_id.as_ref() == Some(site)
    }

    /// Creating, renaming and deleting sites.
    pub fn may_manage_sites(&self) -> Result<(), Denied> {
        if self.is_master() {
            Ok(())
        } else {
            Err(Denied::InsufficientPermission("only a Master key can manage sites"))
        }
    }

    /// Viewing and managing keys and audit records at all (before any target is known).
    pub fn may_manage_keys(&self) -> Result<(), Denied> {
        if self.permission.includes(Permission::Admin) {
            Ok(())
        } else {
            Err(Denied::InsufficientPermission("only Admin and Master keys can manage keys"))
        }
    }

    /// Which site's keys or audit a listing covers. `None` asked by a Master means
    /// "everything"; an Admin always gets its own site.
    pub fn listing_scope(&self, requested: Option<&SiteId>) -> Result<Option<SiteId>, Denied> {
        self.may_manage_keys()?;
        match requested {
            Some(site) if self.is_master() || self.is_admin_of(site) => Ok(Some(site.clone())),
            Some(_) => Err(Denied::SiteNotVisible),
            None if self.is_master() => Ok(None),
            None => Ok(self.site_id.clone()),
        }
    }

    /// Viewing, editing, blocking or deleting one existing key.
    pub fn may_manage_key(&self, target: &KeyRecord) -> Result<(), Denied> {
        self.may_manage_keys()?;
        if self.is_master() {
            return Ok(());
        }
        // Admin cannot see Master keys: the seed's Master is system-wide, above any site.
        match &target.site_id {
            Some(site) if self.is_admin_of(site) && Permission::Admin.includes(target.permission) => Ok(()),
            _ => Err(Denied::NotVisible),
        }
    }

    /// Creating a key at `permission` in `site`, or raising an existing key to it.
    pub fn may_grant(&self, permission: Permission, site: Option<&SiteId>) -> Result<(), Denied> {
        self.may_manage_keys()?;
        if !self.permission.includes(permission) {
            return Err(Denied::InsufficientPermission("a key cannot grant a level above its own"));
        }
        match (permission, site) {
            (Permission::Master, Some(_)) => Err(Denied::Invalid("a Master key belongs to no site; omit site_id")),
            (Permission::Master, None) => Ok(()),
            (_, None) => Err(Denied::Invalid("site_id is required for Read, Write and Admin keys")),
            (_, Some(site)) if self.is_master() || self.is_admin_of(site) => Ok(()),
            (_, Some(_)) => Err(Denied::SiteNotVisible),
        }
    }

    /// The levels a key created or edited by this caller in `site` may have, lowest
    /// first: what a form offers. Master keys have no site, other keys must have one.
    pub fn grantable_levels(&self, site: Option<&SiteId>) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|level| self.may_grant(*level, site).is_ok()).collect()
    }

    /// The levels offered when creating a key, site not chosen yet.
    pub fn creatable_levels(&self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|level| self.permission.includes(*level)).collect()
    }
}

/// What a protected route demands of a key, for the verify and forward-auth endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    pub permission: Option<Permission>,
    pub scopes: Scopes,
    /// The site the request is for; a Master key fits every site.
    pub site: Option<ulid::Ulid>,
}

/// Why a usable key does not meet a `Requirement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmet {
    InsufficientPermission,
    MissingScope,
    WrongSite,
}

impl Requirement {
    /// At least `permission`, any site, no scopes.
    pub fn at_least(permission: Permission) -> Self {
        Self { permission: Some(permission), ..Self::default() }
    }

    /// Viewing and managing keys and the audit trail, through the API or the dashboard: the
    /// Forja seed lets only Admin and Master do it.
    pub fn manages_keys() -> Self {
        Self::at_least(Permission::Admin)
    }

    /// Signing in to the dashboard, the page that manages keys.
    pub fn dashboard() -> Self {
        Self::manages_keys()
    }

    /// Creating, renaming and deleting sites: Master only (the seed's system-wide level).
    pub fn manages_sites() -> Self {
        Self::at_least(Permission::Master)
    }

    /// Checks site first (a key of another site learns nothing else), then level, then scopes.
    pub fn check(&self, permission: Permission, site: Option<ulid::Ulid>, scopes: &Scopes) -> Result<(), Unmet> {
        if let Some(required) = self.site {
            if permission != Permission::Master && site != Some(required) {
                return Err(Unmet::WrongSite);
            }
        }
        if self.permission.is_some_and(|required| !permission.includes(required)) {
            return Err(Unmet::InsufficientPermission);
        }
        if !scopes.contains_all(&self.scopes) {
            return Err(Unmet::MissingScope);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::fixtures::key;

    fn caller(permission: Permission, site: Option<&SiteId>) -> Caller {
        Caller { permission, site_id: site.cloned(), actor: Actor::system() }
    }

    #[test]
    fn read_and_write_keys_cannot_manage_keys() {
        let site = SiteId::generate();
        for level in [Permission::Read, Permission::Write] {
            let c = caller(level, Some(&site));
            assert!(matches!(c.may_manage_keys(), Err(Denied::InsufficientPermission(_))));
            assert!(c.can_view_site(&site));
            assert!(!c.can_view_site(&SiteId::generate()));
        }
    }

    #[test]
    fn an_admin_manages_its_own_site_up_to_admin_only() {
        let site = SiteId::generate();
        let other = SiteId::generate();
        let admin = caller(Permission::Admin, Some(&site));
        assert!(admin.may_manage_key(&key(Permission::Admin, Some(&site))).is_ok());
        assert_eq!(admin.may_manage_key(&key(Permission::Read, Some(&other))), Err(Denied::NotVisible));
        assert_eq!(admin.may_manage_key(&key(Permission::Master, None)), Err(Denied::NotVisible));
        assert!(admin.may_grant(Permission::Write, Some(&site)).is_ok());
        assert_eq!(admin.may_grant(Permission::Write, Some(&other)), Err(Denied::SiteNotVisible));
        assert!(matches!(admin.may_grant(Permission::Master, None), Err(Denied::InsufficientPermission(_))));
        assert_eq!(admin.listing_scope(None), Ok(Some(site.clone())));
        assert_eq!(admin.listing_scope(Some(&other)), Err(Denied::SiteNotVisible));
    }

    #[test]
    fn a_master_reaches_every_site_and_master_keys_have_no_site() {
        let site = SiteId::generate();
        let master = caller(Permission::Master, None);
        assert!(master.may_manage_key(&key(Permission::Master, None)).is_ok());
        assert!(master.may_grant(Permission::Master, None).is_ok());
        assert!(matches!(master.may_grant(Permission::Master, Some(&site)), Err(Denied::Invalid(_))));
        assert!(matches!(master.may_grant(Permission::Read, None), Err(Denied::Invalid(_))));
        assert_eq!(master.listing_scope(None), Ok(None));
    }

    #[test]
    fn a_requirement_checks_site_then_level_then_scopes() {
        let site = SiteId::generate().ulid();
        let scopes = Scopes::parse(&["flows:execute"]).unwrap();
        let need = Requirement { permission: Some(Permission::Write), scopes: scopes.clone(), site: Some(site) };
        assert_eq!(need.check(Permission::Write, Some(site), &scopes), Ok(()));
        assert_eq!(need.check(Permission::Read, Some(site), &scopes), Err(Unmet::InsufficientPermission));
        assert_eq!(need.check(Permission::Admin, Some(site), &Scopes::default()), Err(Unmet::MissingScope));
        assert_eq!(need.check(Permission::Admin, Some(SiteId::generate().ulid()), &scopes), Err(Unmet::WrongSite));
        assert_eq!(need.check(Permission::Master, None, &scopes), Ok(()));
    }
}
