//! `latchkey migrate`: copies sites, keys (with their hashes, so no key is re-issued) and
//! the audit trail from one store to another, page by page, then checks the counts.

use anyhow::{bail, Context};
use latchkey_store::{AuditFilter, ImportBatch, KeyFilter, Page, Store};
use std::time::Instant;

const PAGE: u32 = 5_000;

pub async fn copy_everything(from: &dyn Store, to: &dyn Store, force: bool) -> anyhow::Result<()> {
    if !force && !is_empty(to).await? {
        bail!("the target database is not empty; pass --force to copy into it anyway");
    }
    let started = Instant::now();
    let sites = copy_pages("sites", from, to, |store, page| async move {
        let sites = store.list_sites(&page).await?;
        let cursor = sites.last().map(|s| s.id.to_string());
        Ok((ImportBatch { sites, ..Default::default() }, cursor))
    })
    .await?;
    let keys = copy_pages("keys", from, to, |store, page| async move {
        let keys = store.list_keys(&KeyFilter::default(), &page).await?;
        let cursor = keys.last().map(|k| k.id.to_string());
        Ok((ImportBatch { keys, ..Default::default() }, cursor))
    })
    .await?;
    let events = copy_pages("audit events", from, to, |store, page| async move {
        let events = store.list_audit(&AuditFilter::default(), &page).await?;
        let cursor = events.last().map(|e| e.id.to_string());
        Ok((ImportBatch { events, ..Default::default() }, cursor))
    })
    .await?;
    let copied = (count_sites(to).await?, count_keys(to).await?, count_events(to).await?);
    if !force && copied != (sites, keys, events) {
        bail!("count mismatch after copying: source {:?}, target {:?}", (sites, keys, events), copied);
    }
    eprintln!(
        "done in {:.1}s: {sites} sites, {keys} keys, {events} audit events; target now holds {} sites, {} keys, {} events",
        started.elapsed().as_secs_f64(),
        copied.0,
        copied.1,
        copied.2
    );
    Ok(())
}

/// Reads `from` page by page with `read` and imports each page into `to`, printing progress.
async fn copy_pages<'a, F, Fut>(what: &str, from: &'a dyn Store, to: &dyn Store, read: F) -> anyhow::Result<usize>
where
    F: Fn(&'a dyn Store, Page) -> Fut,
    Fut: std::future::Future<Output = Result<(ImportBatch, Option<String>), latchkey_store::StoreError>>,
{
    let mut cursor = None;
    let mut total = 0;
    loop {
        let (batch, next) = read(from, Page { after: cursor.clone(), limit: PAGE }).await?;
        let rows = batch.sites.len() + batch.keys.len() + batch.events.len();
        if rows == 0 {
            break;
        }
        to.import(&batch).await.with_context(|| format!("could not write {what}"))?;
        total += rows;
        eprintln!("copied {total} {what}");
        cursor = next;
    }
    Ok(total)
}

async fn is_empty(store: &dyn Store) -> anyhow::Result<bool> {
    let one = Page { after: None, limit: 1 };
    Ok(store.has_no_keys().await? && store.list_sites(&one).await?.is_empty())
}

async fn count_sites(store: &dyn Store) -> anyhow::Result<usize> {
    count(|page| async move { Ok(store.list_sites(&page).await?.iter().map(|s| s.id.to_string()).collect()) }).await
}

async fn count_keys(store: &dyn Store) -> anyhow::Result<usize> {
    count(|page| async move {
        Ok(store.list_keys(&KeyFilter::default(), &page).await?.iter().map(|k| k.id.to_string()).collect())
    })
    .await
}

async fn count_events(store: &dyn Store) -> anyhow::Result<usize> {
    count(|page| async move {
        Ok(store.list_audit(&AuditFilter::default(), &page).await?.iter().map(|e| e.id.to_string()).collect())
    })
    .await
}

/// Counts rows by walking the ids of every page (the Store trait has listings, not counts).
async fn count<F, Fut>(ids_of_page: F) -> anyhow::Result<usize>
where
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<String>>>,
{
    let (mut total, mut cursor) = (0, None);
    loop {
        let ids = ids_of_page(Page { after: cursor, limit: PAGE }).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        total += ids.len();
        cursor = ids.last().cloned();
    }
}
