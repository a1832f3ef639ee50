//! Leak reports: anyone who finds a key (a secret scanner, a stranger, GitHub's partner
//! program) can report it without a key of their own; a valid reported key is blocked at
//! once. Nothing tells the reporter which keys matched, so reports cannot test keys.

use crate::error::{ServiceError, ServiceResult};
use crate::Service;
use latchkey_core::{Actor, AuditAction, AuditChange, AuditEvent, KeyRecord, Status};
use latchkey_store::{next_version, truncate_to_millis, Audited};
use std::net::IpAddr;

pub const MAX_KEYS_PER_REPORT: usize = 100;
pub const MAX_SOURCE_CHARS: usize = 500;

/// The leak-report operations; reached through [`Service::leaks`].
pub struct Leaks<'a> {
    pub(crate) service: &'a Service,
}

impl Leaks<'_> {
    /// Blocks every reported key that is valid and records `key_reported_leaked` with
    /// the source. Limited per reporting address (10 reports a minute).
    pub async fn report(&self, keys: &[String], source: &str, reporter_ip: Option<IpAddr>) -> ServiceResult<usize> {
        let now = self.service.now();
        if let Some(retry_after_seconds) =
            self.service.leak_report_throttle.record_failure(reporter_ip, now.timestamp())
        {
            return Err(ServiceError::TooManyRequests { retry_after_seconds });
        }
        if keys.is_empty() || keys.len() > MAX_KEYS_PER_REPORT {
            return Err(ServiceError::invalid(format!("keys must hold 1 to {MAX_KEYS_PER_REPORT} keys")));
        }
        let source = source.trim();
        if source.is_empty() || source.chars().count() > MAX_SOURCE_CHARS {
            return Err(ServiceError::invalid(format!("source must be 1 to {MAX_SOURCE_CHARS} characters")));
        }
        // The reporter is not a key: the audit names the address the report came from.
        let reporter = Actor { key_id: None, key_prefix: None, source_ip: reporter_ip.map(|ip| ip.to_string()) };
        for key in keys {
            self.block_if_valid(key.trim(), source, &reporter).await?;
        }
        Ok(keys.len())
    }

    async fn block_if_valid(&self, presented: &str, source: &str, reporter: &Actor) -> ServiceResult<()> {
        let Ok(hash) = latchkey_core::key_format::lookup_hash(presented) else {
            return Ok(());
        };
        let Some(key) = self.service.store.find_key_by_hash(&hash).await? else {
            return Ok(());
        };
        if key.status == Status::Blocked {
            return Ok(());
        }
        let now = self.service.now();
        let after = KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, now), ..key.clone() };
        let mut changes = AuditChange::between(&key, &after);
        changes.push(AuditChange { field: "source".into(), before: None, after: Some(source.to_owned()) });
        let event = AuditEvent::new(reporter, AuditAction::KeyReportedLeaked, truncate_to_millis(now))
            .for_key(&key)
            .with_changes(changes);
        self.service.store.update_key(&key, Audited { value: &after, event: &event }).await?;
        self.service.cache.forget(&key.hash);
        // Security first: a leaked Master key is blocked even when it was the last one, and
        // then the operator is told, loudly and on /healthz.
        if key.permission == latchkey_core::Permission::Master && !self.service.store.has_usable_master(now).await? {
            self.service.no_usable_master.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                key_id = %key.id,
                "the last usable Master key was reported leaked and blocked; run `latchkey bootstrap` where the \
                 database is to issue a new one"
            );
        }
        Ok(())
    }
}
