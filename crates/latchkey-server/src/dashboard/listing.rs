//! Pages of keys for the dashboard's lists, and the pager under them. The service lists
//! keys newest first by site; what it cannot filter by (Master keys only, a name or prefix
//! typed in a search box) is filtered here, reading the listing in large pages. A store
//! filter for each would save that reading (see the report on the dashboard issue).

use latchkey_core::{Caller, KeyRecord, SiteId};
use latchkey_service::keys::KeyQuery;
use latchkey_service::{PageRequest, Service, ServiceResult};
use maud::{html, Markup};

/// Keys read at most to fill one filtered page, so a search cannot read a million keys.
const MAX_SCANNED: usize = 20_000;
const SCAN_PAGE: u32 = 200;

/// One page of a list and where the next one starts.
pub struct KeysPage {
    pub keys: Vec<KeyRecord>,
    pub next: Option<String>,
    /// The page stopped at `MAX_SCANNED` keys read, before it was full.
    pub cut_short: bool,
}

/// Keys in `site` (every key for a Master when `None`) that `keep` accepts (all of them
/// without it), `size` per page, starting after `cursor`.
pub async fn filtered_keys(
    service: &Service,
    caller: &Caller,
    site: Option<SiteId>,
    keep: Option<&(dyn Fn(&KeyRecord) -> bool + Sync)>,
    cursor: Option<String>,
    size: usize,
) -> ServiceResult<KeysPage> {
    let query = KeyQuery { site, ..KeyQuery::default() };
    let Some(keep) = keep else {
        let listed = service.keys().list(caller, query, &PageRequest { cursor, limit: Some(size as u32) }).await?;
        return Ok(KeysPage { keys: listed.items, next: listed.next_cursor, cut_short: false });
    };
    let mut request = PageRequest { cursor, limit: Some(SCAN_PAGE) };
    let mut kept: Vec<KeyRecord> = Vec::new();
    let mut scanned = 0;
    loop {
        let listed = service.keys().list(caller, query.clone(), &request).await?;
        for key in listed.items {
            scanned += 1;
            if keep(&key) {
                if kept.len() == size {
                    // One more than fits: there is a next page, after the last one shown.
                    let next = kept.last().map(|last| last.id.to_string());
                    return Ok(KeysPage { keys: kept, next, cut_short: false });
                }
                kept.push(key);
            }
        }
        match listed.next_cursor {
            Some(next) if scanned >= MAX_SCANNED => {
                return Ok(KeysPage { keys: kept, next: Some(next), cut_short: true });
            }
            Some(next) => request.cursor = Some(next),
            None => return Ok(KeysPage { keys: kept, next: None, cut_short: false }),
        }
    }
}

/// Where the reader is in a list that pages forward by cursor: the cursors of the pages
/// before this one travel in the address (`trail`), so "Newer" can go back.
pub struct Pager {
    pub cursor: Option<String>,
    trail: Vec<String>,
}

/// The first page, in a trail (a cursor cannot be empty, so this word stands for none).
const FIRST: &str = "first";

impl Pager {
    pub fn new(cursor: Option<&str>, trail: Option<&str>) -> Self {
        let trail = trail.unwrap_or_default().split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
        Self { cursor: cursor.filter(|c| !c.is_empty()).map(str::to_owned), trail }
    }

    pub fn page_number(&self) -> usize {
        self.trail.len() + 1
    }

    /// "← Newer", "Page N", "Older →", each link keeping the list's other parameters.
    pub fn links(&self, path: &str, params: &[(&str, &str)], next: Option<&str>, what: &str) -> Markup {
        let href = |cursor: Option<&str>, trail: &[String]| {
            let trail = trail.join(",");
            let mut pairs = params.to_vec();
            pairs.push(("cursor", cursor.unwrap_or_default()));
            pairs.push(("trail", &trail));
            format!("{path}?{}", super::query(&pairs))
        };
        let newer = self.trail.split_last().map(|(previous, before)| {
            let cursor = Some(previous.as_str()).filter(|c| *c != FIRST);
            href(cursor, before)
        });
        let older = next.map(|next| {
            let mut trail = self.trail.clone();
            trail.push(self.cursor.clone().unwrap_or_else(|| FIRST.to_owned()));
            href(Some(next), &trail)
        });
        html! {
            @if newer.is_some() || older.is_some() {
                nav.pager aria-label={ "Pages of " (what) } {
                    @if let Some(newer) = &newer { a rel="prev" href=(newer) { "← Newer " (what) } }
                    span.muted { "Page " (self.page_number()) }
                    @if let Some(older) = &older { a rel="next" href=(older) { "Older " (what) " →" } }
                }
            }
        }
    }
}
